"""The Redshift stand-in itself: the real redshift-connector over TLS, COPY from moto S3, load errors,
transactions, DDL, faults. (The project's RedshiftWarehouse against it is tested elsewhere.)"""

from __future__ import annotations

import json
import re
import threading
import time

import boto3
import pytest
import redshift_connector

from sparkify_dagster_tests.redshift_standin import describe_error

pytestmark = [
    pytest.mark.redshift_standin,
    # redshift-connector 2.2.0 builds its client context with the deprecated SSLContext() form.
    pytest.mark.filterwarnings("ignore:ssl.SSLContext\\(\\) without protocol argument:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning"),
]

BUCKET = "standin-test"
REGION = "us-west-2"


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


@pytest.fixture(scope="module")
def role(redshift_standin):
    return redshift_standin.create_copy_role()


@pytest.fixture
def conn(redshift_standin):
    c = redshift_standin.connect()
    c.autocommit = True  # explicit BEGIN/COMMIT, as the project does
    yield c
    c.close()


def run(conn, sql, params=None):
    cur = conn.cursor()
    cur.paramstyle = "qmark"
    try:
        cur.execute(sql, params) if params is not None else cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []
    finally:
        cur.close()


def put(s3, key, body):
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body)
    return f"s3://{BUCKET}/{key}"


def copy(table, url, role, json_option="'auto'", extra="MAXERROR 0"):
    return (f"COPY {table} FROM '{url}' IAM_ROLE '{role}' FORMAT AS JSON {json_option} REGION '{REGION}' {extra} "
            f"COMPUPDATE OFF STATUPDATE OFF")


def fails(conn, sql):
    """The error text (message [SQLSTATE] detail) of a statement that must fail."""
    with pytest.raises(redshift_connector.Error) as err:
        run(conn, sql)
    return describe_error(err.value)


def load_errors(conn, query_id=None):
    where = f"WHERE query = {int(query_id)}" if query_id is not None else "WHERE query = pg_last_copy_id()"
    return run(conn, "SELECT line_number, TRIM(colname), err_code, TRIM(err_reason), TRIM(filename), TRIM(raw_line) "
                     f"FROM stl_load_errors {where} ORDER BY filename, line_number")


# --- connecting ----------------------------------------------------------------------------------


def test_the_real_driver_connects_over_tls_and_sees_a_plain_server_version(redshift_standin, conn):
    import ssl

    assert isinstance(conn._usock, ssl.SSLSocket)  # the driver's default: TLS, certificate verified
    versions = [v for k, v in conn.parameter_statuses if k == b"server_version"]
    assert versions and re.fullmatch(rb"\d+(\.\d+)+", versions[-1])
    assert run(conn, "SELECT current_user, current_database()") == [("sparkify", "sparkify")]
    assert redshift_standin.statements.connections[-1]["tls"] is True


@pytest.mark.parametrize("sslmode", ["verify-ca", "verify-full"])
def test_explicit_sslmodes_verify_the_certificate(redshift_standin, sslmode):
    c = redshift_standin.connect(sslmode=sslmode)  # verify-full: OpenSSL checks 127.0.0.1 against the SAN
    try:
        assert run(c, "SELECT 1") == [(1,)]
    finally:
        c.close()


def test_without_the_stand_in_ca_the_driver_refuses_the_server(redshift_standin, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(Exception, match="(?i)certificate"):
        redshift_standin.connect()


def test_plain_tcp_and_a_wrong_password_are_refused(redshift_standin):
    with pytest.raises(redshift_connector.Error, match="SSL off"):
        redshift_standin.connect(ssl=False)
    with pytest.raises(redshift_connector.Error, match="password authentication failed"):
        redshift_standin.connect(password="wrong")


# --- COPY basics ---------------------------------------------------------------------------------


def test_copy_loads_a_small_json_file(conn, s3, role):
    url = put(s3, "basic/events.json", '{"artist": "A", "ts": 1}\n{"artist": "B", "ts": 2, "extra": true}\n\n'
                                       '{"ts": 3}')
    run(conn, "CREATE TABLE basic (artist varchar(16), ts bigint)")
    cur = conn.cursor()
    cur.execute(copy("basic", url, role))
    assert cur.rowcount == 3  # the command tag is COPY 3
    assert any("3 record(s) loaded successfully" in n[b"M"].decode() for n in conn.notices)
    assert run(conn, "SELECT artist, ts FROM basic ORDER BY ts") == [("A", 1), ("B", 2), (None, 3)]
    assert run(conn, "SELECT pg_last_copy_count()") == [(3,)]
    assert load_errors(conn) == []


def test_auto_ignorecase_and_column_lists(conn, s3, role):
    url = put(s3, "case/one.json", '{"Artist": "A", "TS": 5, "other": 1}')
    run(conn, "CREATE TABLE cased (artist varchar(8), ts bigint, other integer DEFAULT 7)")
    run(conn, copy("cased (artist, ts)", url, role))  # 'auto' is case-sensitive: Artist, TS do not match
    run(conn, copy("cased (artist, ts)", url, role, "'auto ignorecase'"))
    assert run(conn, "SELECT artist, ts, other FROM cased ORDER BY artist NULLS FIRST") == [(None, None, 7),
                                                                                        ("A", 5, 7)]


def test_jsonpaths_map_by_position_with_brackets_dots_and_indexes(conn, s3, role):
    data = put(s3, "paths/data.json", '{"a": {"b": "deep"}, "list": [10, 20], "Mixed Key": "m"}\n[1, "arr"]')
    bracket = put(s3, "paths/bracket.json", json.dumps({"jsonpaths": ["$['a']['b']", "$['list'][1]",
                                                                      "$[\"Mixed Key\"]"]}))
    dots = put(s3, "paths/dots.json", json.dumps({"jsonpaths": ["$.a.b", "$.list[0]", "$.missing"]}))
    arrays = put(s3, "paths/arrays.json", json.dumps({"jsonpaths": ["$[1]", "$[0]", "$[5]"]}))
    run(conn, "CREATE TABLE paths (s varchar(8), n integer, k varchar(8))")
    run(conn, copy("paths", data, role, f"'{bracket}'", "MAXERROR 5"))
    run(conn, copy("paths", data, role, f"'{dots}'", "MAXERROR 5"))
    run(conn, copy("paths", data, role, f"'{arrays}'", "MAXERROR 5"))
    rows = run(conn, "SELECT s, n, k FROM paths ORDER BY s, n")
    assert ("deep", 20, "m") in rows and ("deep", 10, None) in rows and ("arr", 1, None) in rows
    assert (None, None, None) in rows  # the object record read with array paths: every path misses


def test_jsonpaths_that_are_not_emulated_or_do_not_fit_fail_the_copy(conn, s3, role):
    data = put(s3, "badpaths/data.json", '{"a": 1}')
    run(conn, "CREATE TABLE badpaths (a integer, b integer)")
    for paths, message in [
        (["$.a"], "Number of jsonpaths and the number of columns should match. JSONPath size: 1"),
        (["$.a", "$..b"], "Invalid JSONPath format"),
        (["$['a']", "$.b"], "mixes bracket and dot notation"),
        (["$.a", "$.b[*]"], "Invalid JSONPath format"),
    ]:
        url = put(s3, "badpaths/paths.json", json.dumps({"jsonpaths": paths}))
        assert message in fails(conn, copy("badpaths", data, role, f"'{url}'"))
    # docs: a file whose key is not "jsonpaths" is ignored and 'auto' is used.
    url = put(s3, "badpaths/other.json", json.dumps({"paths": ["$.x"]}))
    run(conn, copy("badpaths", data, role, f"'{url}'"))
    assert run(conn, "SELECT a, b FROM badpaths") == [(1, None)]


# --- conversion rules ----------------------------------------------------------------------------

# (column, JSON value as it appears in the file (None: key absent), expected)
# expected: ("value", loaded) or ("reject", err_code, err_reason)
CONVERSIONS = [
    ("i", b"1", ("value", 1)),
    ("i", b"-2147483648", ("value", -2147483648)),
    ("i", b"2147483648", ("reject", 1204, "Overflow (Integer valid range -2147483648 to 2147483647)")),
    ("i", b"1.5", ("reject", 1207, "Invalid digit, Value '.', Pos 1, Type: Integer")),
    ("i", b"1e3", ("reject", 1207, "Invalid digit, Value 'e', Pos 1, Type: Integer")),
    ("i", b'"42"', ("value", 42)),
    ("i", b'" 7 "', ("value", 7)),
    ("i", b'""', ("value", None)),
    ("i", b'"   "', ("value", None)),
    ("i", b'"abc"', ("reject", 1207, "Invalid digit, Value 'a', Pos 0, Type: Integer")),
    ("i", b"true", ("reject", 1207, "Invalid digit, Value 't', Pos 0, Type: Integer")),
    ("i", b'{"x": 1}', ("reject", 1207, "Invalid digit, Value '{', Pos 0, Type: Integer")),
    ("i", b"[1]", ("reject", 1207, "Invalid digit, Value '[', Pos 0, Type: Integer")),
    ("i", b"null", ("value", None)),
    ("i", None, ("value", None)),
    ("b", b"9223372036854775807", ("value", 9223372036854775807)),
    ("b", b"9223372036854775808", ("reject", 1204, "Overflow (Long valid range")),
    ("b", b'"12x"', ("reject", 1207, "Invalid digit, Value 'x', Pos 2, Type: Long")),
    ("d", b"1.5", ("value", 1.5)),
    ("d", b"-2", ("value", -2.0)),
    ("d", b'"2.25"', ("value", 2.25)),
    ("d", b'""', ("value", None)),
    ("d", b'"NaN"', ("reject", 1208, "Invalid digit, Value 'N', Pos 0, Type: Double")),
    ("d", b'"Infinity"', ("reject", 1208, "Invalid digit, Value 'I', Pos 0, Type: Double")),
    ("d", b"1e400", ("reject", 1204, "Overflow (Double valid range")),
    ("d", b"false", ("reject", 1208, "Invalid digit, Value 'f', Pos 0, Type: Double")),
    ("v", b'"abcde"', ("value", "abcde")),
    ("v", b'"abcdef"', ("reject", 1204, "String length exceeds DDL length")),
    ("v", '"éé"'.encode(), ("value", "éé")),  # 4 bytes
    ("v", '"ééé"'.encode(), ("reject", 1204, "String length exceeds DDL length")),  # 3 characters, 6 bytes
    ("v", b"12", ("value", "12")),
    ("v", b"1.50", ("value", "1.50")),
    ("v", b"true", ("value", "true")),
    ("v", b'""', ("value", "")),
    ("v", b'"\\ud800"', ("reject", 1220, "Bad UTF-8 hex sequence: eda080 (error 5)")),
    ("v", b'"a\xffb"', ("reject", 1220, "Bad UTF-8 hex sequence: ff (error 3)")),
    ("v", b'"\xc3("', ("reject", 1220, "Bad UTF-8 hex sequence: c328 (error 4)")),
    ("w", b'{"k": [1, 2.0], "s": "x"}', ("value", '{"k":[1,2.0],"s":"x"}')),
    ("w", b"[1, 2]", ("value", "[1,2]")),
    ("c", b'"ab"', ("value", "ab ")),
    ("c", '"é"'.encode(), ("reject", 1220, "Multibyte character not supported for CHAR")),
    ("c", b'"abcd"', ("reject", 1204, "Char length exceeds DDL length")),
]


@pytest.fixture(scope="module")
def conversions(redshift_standin, s3, role):
    """Every case of CONVERSIONS as one record (line = case number + 1), loaded by one COPY."""
    lines = []
    for n, (column, value, _) in enumerate(CONVERSIONS):
        lines.append(b'{"id": %d}' % n if value is None else b'{"id": %d, "%s": %s}' % (n, column.encode(), value))
    url = put(s3, "conversions/cases.json", b"\n".join(lines))
    c = redshift_standin.connect()
    c.autocommit = True
    try:
        run(c, "CREATE TABLE conversions (id integer, i integer, b bigint, d double precision, v varchar(5), "
               "w varchar(64), c char(3))")
        run(c, copy("conversions", url, role, extra="MAXERROR 1000"))
        rows = {r[0]: r for r in run(c, "SELECT id, i, b, d, v, w, c FROM conversions")}
        errors = {line: (col, code, reason) for line, col, code, reason, _, _ in load_errors(c)}
    finally:
        c.close()
    return rows, errors


@pytest.mark.parametrize("n", range(len(CONVERSIONS)), ids=[f"{c}={v!r}" for c, v, _ in CONVERSIONS])
def test_conversion_rule(conversions, n):
    rows, errors = conversions
    column, _, expected = CONVERSIONS[n]
    if expected[0] == "value":
        assert n in rows and n + 1 not in errors
        assert rows[n]["ibdvwc".index(column) + 1] == expected[1]
    else:
        assert n not in rows
        col, code, reason = errors[n + 1]
        assert (col, code) == (column, expected[1]) and expected[2] in reason, reason


def test_not_null_columns_reject_missing_values(conn, s3, role):
    url = put(s3, "notnull/data.json", '{"k": "a", "v": 1}\n{"v": 2}\n{"k": null}')
    run(conn, "CREATE TABLE required_cols (k varchar(4) NOT NULL, v integer)")
    run(conn, copy("required_cols", url, role, extra="MAXERROR 5"))
    assert run(conn, "SELECT k, v FROM required_cols") == [("a", 1)]
    assert [(e[0], e[1], e[2]) for e in load_errors(conn)] == [(2, "k", 1213), (3, "k", 1213)]


# --- JSON framing --------------------------------------------------------------------------------


def test_json_framing_records_and_line_numbers(redshift_standin, conn, s3, role):
    text = ("\ufeff"  # a byte-order mark
            '{"a": 1}{"a": 2}\n'  # back to back on one line
            "\n"  # blank line: no record
            '{"a":\n 3,\n "b": "x"}\n'  # spans lines 3-5
            '{"a": 4,}\n'  # trailing comma: malformed (line 6)
            '{"a": NaN}\n'  # not JSON (line 7)
            'junk {"a": 5}\n'  # junk, then a record (line 8)
            '[1, 2]\n'  # an array with 'auto' (line 9)
            '"just a string"\n'  # not an object (line 10)
            '{"a": 6, "b": "unclosed\n'  # a string that does not close on its line (line 11)
            '{"a": 7}')  # line 12
    url = put(s3, "framing/data.json", text)
    run(conn, "CREATE TABLE framing (a integer, b varchar(4))")
    run(conn, copy("framing", url, role, extra="MAXERROR 20"))
    assert sorted(r[0] for r in run(conn, "SELECT a FROM framing")) == [1, 2, 3, 5, 7]
    errors = [(line, code) for line, _, code, _, _, _ in load_errors(conn)]
    assert errors == [(6, 1216), (7, 1216), (8, 1216), (9, 1216), (10, 1216), (11, 1216)]

    # docs: LINE_NUMBER is the last line of the JSON object; "first" reports where it starts.
    bad = put(s3, "framing/multiline.json", '{"a": 1}\n{"a":\n "x"\n}\n')
    run(conn, copy("framing", bad, role, extra="MAXERROR 5"))
    assert [e[0] for e in load_errors(conn)] == [4]
    redshift_standin.json_line_number = "first"
    try:
        run(conn, copy("framing", bad, role, extra="MAXERROR 5"))
        assert [e[0] for e in load_errors(conn)] == [2]
    finally:
        redshift_standin.json_line_number = "last"


def test_raw_line_replaces_multibyte_characters_with_a_period(conn, s3, role):
    url = put(s3, "rawline/data.json", '{"a": "x", "name": "Zoë"}'.encode())
    run(conn, "CREATE TABLE rawline (a integer)")
    run(conn, copy("rawline", url, role, extra="MAXERROR 1"))
    (error,) = load_errors(conn)
    assert error[5] == '{"a": "x", "name": "Zo."}' and error[4] == url


# --- MAXERROR, load errors and transactions ---------------------------------------------------------


def test_maxerror_tolerates_up_to_n_rejects(conn, s3, role):
    url = put(s3, "maxerr/ok.json", '{"a": 1}\n{"a": "x"}\n{"a": 2}\n{"a": "y"}')
    run(conn, "CREATE TABLE maxerr (a integer)")
    run(conn, copy("maxerr", url, role, extra="MAXERROR 2"))
    assert sorted(run(conn, "SELECT a FROM maxerr")) == [(1,), (2,)]
    assert [(e[0], e[1], e[2]) for e in load_errors(conn)] == [(2, "a", 1207), (4, "a", 1207)]


def test_maxerror_exceeded_loads_nothing_and_the_rejects_survive_the_rollback(redshift_standin, conn, s3, role):
    url = put(s3, "maxerr/bad.json", '{"a": 1}\n{"a": "x"}\n{"a": "y"}\n{"a": "z"}')
    run(conn, "CREATE TABLE exceeded (a integer)")
    run(conn, "BEGIN")
    run(conn, "INSERT INTO exceeded VALUES (100)")
    message = fails(conn, copy("exceeded", url, role, extra="MAXERROR 2"))
    assert "Load into table 'exceeded' failed.  Check 'stl_load_errors' system table for details." in message
    run(conn, "ROLLBACK")
    assert run(conn, "SELECT count(*) FROM exceeded") == [(0,)]
    (query_id, count), = run(conn, "SELECT pg_last_copy_id(), pg_last_copy_count()")
    assert count == 0  # docs: 0 when the last COPY failed during loading
    pid = run(conn, "SELECT pg_backend_pid()")[0][0]
    mine = run(conn, f"SELECT session, line_number, err_code FROM stl_load_errors WHERE query = {query_id} "
                     "ORDER BY line_number")
    assert mine == [(pid, 2, 1207), (pid, 3, 1207), (pid, 4, 1207)]
    other = redshift_standin.connect()
    try:
        # SYS numbers queries apart from STL: the session and the file find the same rejects.
        assert run(other, "SELECT session_id, line_number, error_code, TRIM(file_name), TRIM(column_name) "
                          f"FROM sys_load_error_detail WHERE session_id = {pid} AND TRIM(file_name) = '{url}' "
                          "ORDER BY line_number") == [
            (pid, 2, 1207, url, "a"), (pid, 3, 1207, url, "a"), (pid, 4, 1207, url, "a")]
        assert run(other, f"SELECT count(*) FROM sys_load_error_detail WHERE query_id = {query_id}") == [(0,)]
        assert len(run(other, f"SELECT 1 FROM stl_load_errors WHERE query = {query_id}")) == 3
    finally:
        other.close()


def test_maxerror_rule_at_least_follows_the_guides_wording(redshift_standin, conn, s3, role):
    url = put(s3, "maxerr/two.json", '{"a": 1}\n{"a": "x"}\n{"a": "y"}')
    run(conn, "CREATE TABLE atleast (a integer)")
    redshift_standin.maxerror_rule = "at_least"
    try:
        assert "failed" in fails(conn, copy("atleast", url, role, extra="MAXERROR 2"))
        run(conn, copy("atleast", url, role, extra="MAXERROR 3"))
    finally:
        redshift_standin.maxerror_rule = "more_than"
    assert run(conn, "SELECT a FROM atleast") == [(1,)]


def test_pg_last_copy_count_and_id(redshift_standin, conn, s3, role):
    assert run(conn, "SELECT pg_last_copy_id(), pg_last_copy_count()") == [(-1, 0)]
    url = put(s3, "lastcopy/data.json", '{"a": 1}\n{"a": 2}')
    run(conn, "CREATE TABLE lastcopy (a integer)")
    run(conn, copy("lastcopy", url, role))
    first, count = run(conn, "SELECT pg_last_copy_id(), pg_last_copy_count()")[0]
    assert count == 2 and first > 0
    # A COPY refused before loading (missing prefix) does not move them (docs).
    assert "The specified S3 prefix 'lastcopy/nothing' does not exist" in fails(
        conn, copy("lastcopy", f"s3://{BUCKET}/lastcopy/nothing", role))
    assert run(conn, "SELECT pg_last_copy_id(), pg_last_copy_count()") == [(first, 2)]
    # Query ids increase across sessions; each session sees its own last COPY.
    other = redshift_standin.connect()
    other.autocommit = True
    try:
        run(other, copy("lastcopy", url, role))
        second = run(other, "SELECT pg_last_copy_id()")[0][0]
    finally:
        other.close()
    run(conn, copy("lastcopy", url, role))  # the same prepared COPY again reads S3 again
    third = run(conn, "SELECT pg_last_copy_id()")[0][0]
    assert first < second < third
    assert run(conn, "SELECT count(*) FROM lastcopy") == [(6,)]


def test_a_copy_in_a_rolled_back_transaction_leaves_nothing(conn, s3, role):
    url = put(s3, "rollback/data.json", '{"a": 1}\n{"a": 2}')
    run(conn, "CREATE TABLE rolledback (a integer)")
    run(conn, "BEGIN")
    run(conn, copy("rolledback", url, role))
    assert run(conn, "SELECT count(*) FROM rolledback") == [(2,)]
    run(conn, "ROLLBACK")
    assert run(conn, "SELECT count(*) FROM rolledback") == [(0,)]


def test_copy_into_a_temp_table_of_the_session(conn, s3, role):
    url = put(s3, "temp/data.json", '{"a": 1}')
    run(conn, "CREATE TABLE base_t (a integer, source_file varchar(64))")
    run(conn, "BEGIN")
    run(conn, 'CREATE TEMP TABLE "base_t_load" (LIKE "base_t")')
    run(conn, copy('"base_t_load" ("a")', url, role))
    run(conn, "INSERT INTO base_t SELECT a, 'temp/data.json' FROM base_t_load")
    run(conn, "COMMIT")
    assert run(conn, "SELECT a, source_file FROM base_t") == [(1, "temp/data.json")]


# --- S3: prefixes, manifests, IAM, region ---------------------------------------------------------


def test_prefix_matching_versus_manifest(conn, s3, role):
    a = put(s3, "prefix/log_data/a.json", '{"a": 1}')
    put(s3, "prefix/log_data_old/b.json", '{"a": 2}')
    put(s3, "prefix/log_data.bak", '{"a": 3}')
    run(conn, "CREATE TABLE prefixed (a integer)")
    run(conn, copy("prefixed", f"s3://{BUCKET}/prefix/log_data", role))  # docs: a key prefix, not a folder
    assert sorted(run(conn, "SELECT a FROM prefixed")) == [(1,), (2,), (3,)]
    manifest = put(s3, "prefix/one.manifest", json.dumps({"entries": [{"url": a, "mandatory": True}]}))
    run(conn, "DELETE FROM prefixed")
    run(conn, copy("prefixed", manifest, role, extra="MANIFEST MAXERROR 0"))
    assert run(conn, "SELECT a FROM prefixed") == [(1,)]


def test_manifest_entries_mandatory_and_optional(conn, s3, role):
    a = put(s3, "manifest/a.json", '{"a": 1}')
    missing = f"s3://{BUCKET}/manifest/missing.json"
    run(conn, "CREATE TABLE manifested (a integer)")
    optional = put(s3, "manifest/optional.manifest", json.dumps({"entries": [
        {"url": a, "mandatory": True}, {"url": missing}, {"url": a, "mandatory": True}]}))
    run(conn, copy("manifested", optional, role, extra="MANIFEST"))
    assert run(conn, "SELECT a FROM manifested") == [(1,), (1,)]  # docs: a file listed twice loads twice
    mandatory = put(s3, "manifest/mandatory.manifest", json.dumps({"entries": [
        {"url": a, "mandatory": True}, {"url": missing, "mandatory": True}]}))
    assert "mandatory" in fails(conn, copy("manifested", mandatory, role, extra="MANIFEST"))
    assert "Problem reading manifest file" in fails(
        conn, copy("manifested", f"s3://{BUCKET}/manifest/none.manifest", role, extra="MANIFEST"))


def test_iam_role_must_exist_and_trust_redshift(redshift_standin, conn, s3, role):
    url = put(s3, "iam/data.json", '{"a": 1}')
    run(conn, "CREATE TABLE iam_checked (a integer)")
    unknown = role.rsplit("/", 1)[0] + "/no-such-role"
    assert "is not authorized to assume IAM Role " + unknown in fails(conn, copy("iam_checked", url, unknown))
    iam = redshift_standin.s3().iam
    ec2_only = iam.create_role(RoleName="standin-ec2-only", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    assert "not authorized" in fails(conn, copy("iam_checked", url, ec2_only))
    assert run(conn, "SELECT pg_last_copy_id()") == [(-1,)]  # refused before loading


def test_a_bucket_in_another_region_needs_region(conn, s3_endpoint, role):
    east = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")
    east.create_bucket(Bucket="standin-east")
    east.put_object(Bucket="standin-east", Key="d.json", Body=b'{"a": 1}')
    run(conn, "CREATE TABLE regional (a integer)")
    assert "PermanentRedirect" in fails(conn, copy("regional", "s3://standin-east/d.json", role))
    run(conn, f"COPY regional FROM 's3://standin-east/d.json' IAM_ROLE '{role}' JSON 'auto' REGION 'us-east-1'")
    assert run(conn, "SELECT a FROM regional") == [(1,)]


# --- what is not emulated fails loudly --------------------------------------------------------------


@pytest.mark.parametrize("sql, message", [
    ("COPY loud FROM 's3://{b}/loud/d.json' IAM_ROLE '{r}' FORMAT AS JSON 'auto' ACCEPTINVCHARS",
     "COPY option ACCEPTINVCHARS is not emulated"),
    ("COPY loud FROM 's3://{b}/loud/d.json' IAM_ROLE '{r}' FORMAT AS JSON 'auto' FANCYOPTION",
     "unknown COPY option"),
    ("COPY loud FROM 's3://{b}/loud/d.json' IAM_ROLE '{r}' FORMAT AS CSV", "COPY FORMAT CSV (only JSON)"),
    ("COPY loud FROM 's3://{b}/loud/d.json' IAM_ROLE '{r}'", "COPY without FORMAT AS JSON"),
    ("COPY loud FROM 's3://{b}/loud/d.json' IAM_ROLE '{r}' CSV", "COPY option CSV is not emulated"),
    ("COPY loud FROM '/tmp/d.json' IAM_ROLE '{r}' JSON 'auto'", "only Amazon S3"),
    ("COPY loud FROM STDIN", "only FROM 's3://"),
    ("COPY loud FROM 's3://{b}/loud/d.json' CREDENTIALS 'aws_access_key_id=x' JSON 'auto'",
     "COPY option CREDENTIALS is not emulated"),
    ("COPY loud FROM 's3://{b}/loud/d.json' IAM_ROLE '{r}' JSON 'noshred'", "not emulated"),
    ("COPY loud (nope) FROM 's3://{b}/loud/d.json' IAM_ROLE '{r}' JSON 'auto'", 'column "nope" does not exist'),
    ("COPY nowhere FROM 's3://{b}/loud/d.json' IAM_ROLE '{r}' JSON 'auto'", 'relation "nowhere" does not exist'),
    ("COPY loudts FROM 's3://{b}/loud/d.json' IAM_ROLE '{r}' JSON 'auto'", "of type timestamp"),
])
def test_unemulated_copy_fails_loudly(conn, s3, role, sql, message):
    put(s3, "loud/d.json", '{"a": 1}')
    run(conn, "CREATE TABLE IF NOT EXISTS loud (a integer)")
    run(conn, "CREATE TABLE IF NOT EXISTS loudts (a timestamp)")
    assert message in fails(conn, sql.format(b=BUCKET, r=role))
    assert run(conn, "SELECT count(*) FROM loud") == [(0,)]


# --- DDL and transactions ------------------------------------------------------------------------


def test_redshift_ddl_is_accepted_and_constraints_are_not_enforced(redshift_standin, conn):
    before = redshift_standin.statements.count(r"^\s*CREATE TABLE")
    run(conn, 'CREATE TABLE IF NOT EXISTS "ddl_users" (\n    "user_id" VARCHAR(64) NOT NULL ENCODE zstd,\n'
              '    "level" VARCHAR(16) UNIQUE,\n    "n" INTEGER DISTKEY REFERENCES "other" ("id"),\n'
              '    PRIMARY KEY ("user_id"),\n    UNIQUE ("level")\n) DISTSTYLE KEY DISTKEY ("user_id") '
              'COMPOUND SORTKEY ("user_id", "level")')
    run(conn, "CREATE TABLE ddl_all (a integer PRIMARY KEY) DISTSTYLE ALL SORTKEY AUTO BACKUP NO")
    run(conn, "CREATE TABLE ddl_ctas DISTSTYLE EVEN AS SELECT 1 AS a")
    run(conn, "INSERT INTO ddl_users VALUES ('u', 'free', 1), ('u', 'free', 2)")  # duplicate keys are accepted
    run(conn, "INSERT INTO ddl_all VALUES (1), (1)")
    assert "not-null constraint" in fails(conn, "INSERT INTO ddl_users VALUES (NULL, 'paid', 3)")
    assert run(conn, "SELECT count(*) FROM ddl_users") == [(2,)]
    assert run(conn, "SELECT a FROM ddl_ctas") == [(1,)]
    assert redshift_standin.statements.count(r"^\s*CREATE TABLE") == before + 3
    rewritten = [e.rewritten for e in redshift_standin.statements.entries if e.event == "parse"
                 and "ddl_users" in e.sql and e.sql.startswith("CREATE")][0]
    assert "DISTSTYLE" not in rewritten and "ENCODE" not in rewritten and "PRIMARY" not in rewritten


def test_sum_of_bigint_is_bigint_as_on_redshift(conn):
    # docs SUM: BIGINT for BIGINT arguments (PostgreSQL's NUMERIC would reach Python as Decimal).
    (total, kind), = run(conn, "SELECT sum(x), pg_typeof(sum(x))::text FROM (VALUES (1::bigint), (2::bigint)) AS t(x)")
    assert (total, type(total), kind) == (3, int, "bigint")
    assert run(conn, "SELECT sum(x)::text FROM (VALUES (1.5::numeric)) AS t(x)") == [("1.5",)]


def test_truncate_commits_the_open_transaction(conn):
    run(conn, "CREATE TABLE trunc_a (a integer)")
    run(conn, "CREATE TABLE trunc_b (b integer)")
    run(conn, "INSERT INTO trunc_b VALUES (1)")
    run(conn, "BEGIN")
    run(conn, "INSERT INTO trunc_a VALUES (1)")
    run(conn, "TRUNCATE trunc_b")
    run(conn, "ROLLBACK")  # docs: nothing left to roll back, the TRUNCATE committed
    assert run(conn, "SELECT count(*) FROM trunc_a") == [(1,)]
    assert run(conn, "SELECT count(*) FROM trunc_b") == [(0,)]


def test_lock_works_as_on_postgresql(conn):
    run(conn, "CREATE TABLE lock_a (a integer)")
    run(conn, "CREATE TABLE lock_b (b integer)")
    run(conn, "BEGIN")
    run(conn, "LOCK lock_a, lock_b")
    run(conn, "COMMIT")


def test_serverless_mode_refuses_stl_relations_but_not_sys_views(redshift_standin):
    redshift_standin.serverless = True
    try:
        c = redshift_standin.connect()
        try:
            assert 'relation "stl_load_errors" does not exist' in fails(c, "SELECT count(*) FROM stl_load_errors")
            run(c, "ROLLBACK")
            assert run(c, "SELECT count(*) >= 0 FROM sys_load_error_detail") == [(True,)]
        finally:
            c.close()
    finally:
        redshift_standin.serverless = False


def test_serializable_mode_really_is_serializable(redshift_standin):
    """Write skew: each session reads the table, then inserts; one of them must fail (1023)."""
    def attempt(isolation):
        redshift_standin.set_isolation(isolation)
        one, two = redshift_standin.connect(), redshift_standin.connect()
        try:
            for c in (one, two):
                c.autocommit = True
            run(one, "CREATE TABLE IF NOT EXISTS skew (who varchar(8))")
            run(one, "DELETE FROM skew")
            failures = []
            run(one, "BEGIN")
            run(two, "BEGIN")
            for c, who in ((one, "one"), (two, "two")):
                run(c, "SELECT count(*) FROM skew")
            for c, who in ((one, "one"), (two, "two")):
                try:
                    run(c, f"INSERT INTO skew VALUES ('{who}')")
                    run(c, "COMMIT")
                except redshift_connector.Error as exc:
                    failures.append(describe_error(exc))
                    run(c, "ROLLBACK")
            return failures
        finally:
            one.close()
            two.close()
            redshift_standin.set_isolation("serializable")

    failures = attempt("serializable")
    assert len(failures) == 1 and failures[0].startswith("1023 [40001] Serializable isolation violation")
    assert attempt("read committed") == []


def test_copy_delay_lets_another_session_kill_a_copy_midway(redshift_standin, s3, role):
    url = put(s3, "killed/data.json", '{"a": 1}\n{"a": 2}')
    victim = redshift_standin.connect()
    victim.autocommit = True
    run(victim, "CREATE TABLE killed (a integer)")
    outcome = {}

    def load():
        try:
            run(victim, "BEGIN")
            run(victim, copy("killed", url, role))
            outcome["ok"] = True
        except Exception as exc:  # the connection dies under the driver
            outcome["error"] = exc

    redshift_standin.copy_delay_seconds = 20
    thread = threading.Thread(target=load)
    try:
        thread.start()
        deadline = time.monotonic() + 10
        while not (busy := [b for b in redshift_standin.backends()
                            if b["state"] == "active" and "copy_apply" in (b["query"] or "")]):
            assert time.monotonic() < deadline, redshift_standin.backends()
            time.sleep(0.05)
        killer = redshift_standin.connect()
        try:
            assert run(killer, f"SELECT pg_terminate_backend({busy[0]['pid']})") == [(True,)]
            thread.join(10)
            assert "error" in outcome and "ok" not in outcome
            assert run(killer, "SELECT count(*) FROM killed") == [(0,)]
        finally:
            killer.close()
    finally:
        redshift_standin.copy_delay_seconds = 0
        thread.join(10)
        try:
            victim.close()
        except Exception:
            pass


def test_statement_log_counts_connections_and_statements(redshift_standin):
    start = len(redshift_standin.statements.connections)
    for _ in range(2):
        c = redshift_standin.connect()
        try:
            run(c, "SELECT 1 AS logged_marker")
        finally:
            c.close()
    assert len(redshift_standin.statements.connections) == start + 2
    assert redshift_standin.statements.count(r"logged_marker") == 2
    numbers = {e.connection for e in redshift_standin.statements.entries if "logged_marker" in e.sql}
    assert len(numbers) == 2
