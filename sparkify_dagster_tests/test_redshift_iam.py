"""IAM sign-in end to end on the stand-in: no password anywhere, temporary credentials instead.

Provisioned: ``dagster asset materialize`` with REDSHIFT_AUTH=iam in a subprocess; redshift-connector
calls GetClusterCredentials on moto (AWS_ENDPOINT_URL) with boto3's credential chain, and the stand-in
accepts exactly the temporary login moto issued (``redshift_standin/iam.py``), working as the
database user it names. Serverless: moto has no redshift-serverless API, so the driver's
GetCredentials call goes to a real botocore client under Stubber (the request checked against the
service model) and the stand-in grants the answer, as the Serverless control plane would.
"""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import Stubber

from sparkify_dagster.cli.generate import generate_dataset
from sparkify_dagster.warehouse.redshift import RedshiftWarehouse
from sparkify_dagster_tests.conftest import upload_tree
from sparkify_dagster_tests.redshift_standin.iam import moto_issues_logins
from sparkify_dagster_tests.redshift_standin.serverless_api import ServerlessApiServer, ServerlessControlPlane
from sparkify_dagster_tests.redshift_wire import (
    REGION,
    assert_same_tables,
    build_embedded,
    duckdb_tables,
    materialize,
    redshift_env,
    redshift_tables,
    s3_client,
)

pytestmark = pytest.mark.redshift_standin
BUCKET = "sparkify-iam"
CLUSTER = "sparkify-standin"


@pytest.fixture(scope="module")
def aws(s3_endpoint, redshift_standin):
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    redshift = boto3.client("redshift", endpoint_url=s3_endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    redshift.create_cluster(ClusterIdentifier=CLUSTER, NodeType="ra3.large", ClusterType="single-node",
                            MasterUsername="admin", MasterUserPassword="Adm1n-pass-word")
    return {"endpoint": s3_endpoint, "s3": client, "role": redshift_standin.create_copy_role()}


@pytest.fixture
def standin(redshift_standin):
    redshift_standin.reset()
    redshift_standin.serverless = False
    yield redshift_standin
    redshift_standin.serverless = False


def _iam_env(standin, aws, data_uri, home, **extra) -> dict:
    env = redshift_env(standin, aws["endpoint"], data_uri, aws["role"], home, REDSHIFT_AUTH="iam", **extra)
    del env["REDSHIFT_PASSWORD"]  # nothing to ask for, store or show
    return env


def test_iam_on_a_cluster_loads_everything_with_temporary_credentials_only(standin, aws, tmp_path):
    root = tmp_path / "raw"
    generate_dataset(root, songs=30, users=5, days=2, events_per_day=40, seed=21)
    upload_tree(aws["s3"], BUCKET, root, "iam-cluster")
    data_uri = f"s3://{BUCKET}/iam-cluster"
    env = _iam_env(standin, aws, data_uri, tmp_path / "home", REDSHIFT_CLUSTER_ID=CLUSTER)
    standin.statements.clear()
    with moto_issues_logins(standin) as issued:
        done = materialize(env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    # The driver asked moto for credentials of the configured user on the configured cluster (auto_create
    # on, so moto answers IAMA:), and every connection of the run signed in with them.
    assert issued and {(i["cluster"], i["db_user"], i["auto_create"], i["login"]) for i in issued} == {
        (CLUSTER, standin.user, True, f"IAMA:{standin.user}")}
    users = {c["user"] for c in standin.statements.connections}
    assert users == {f"IAMA:{standin.user}"}, users
    assert [login for login, _ in standin.temporary_logins()] == [f"IAMA:{standin.user}"]
    build_embedded(tmp_path / "iam.duckdb", data_uri, aws["endpoint"])
    assert_same_tables(redshift_tables(standin), duckdb_tables(tmp_path / "iam.duckdb"))
    # What the temporary login created belongs to the database user it stands for.
    owners = {r[0] for r in standin.admin("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
    assert owners == {standin.user}


def test_iam_on_an_unknown_cluster_is_one_clear_line(standin, aws, tmp_path):
    env = _iam_env(standin, aws, f"s3://{BUCKET}/nothing", tmp_path / "home", REDSHIFT_CLUSTER_ID="no-such-cluster")
    with moto_issues_logins(standin) as issued:
        done = materialize(env)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and not issued
    lines = [line for line in output.splitlines() if "cannot connect to redshift://" in line]
    assert lines and "ClusterNotFound" in lines[0], output[-3000:]


def test_a_temporary_login_is_refused_once_it_expires(standin):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    assert standin.grant_temporary_login("IAM:sparkify", "Temp-Pa55word-1", past, standin.user, False)
    with pytest.raises(Exception, match="password authentication failed"):
        standin.connect(user="IAM:sparkify", password="Temp-Pa55word-1").close()
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=15)
    standin.grant_temporary_login("IAM:sparkify", "Temp-Pa55word-2", soon, standin.user, False)
    conn = standin.connect(user="IAM:sparkify", password="Temp-Pa55word-2")
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_user, session_user")
        assert tuple(cur.fetchone()) == (standin.user, "IAM:sparkify")
    finally:
        conn.close()
    # Without auto_create a user that does not exist gets no login at all.
    assert not standin.grant_temporary_login("IAM:nobody", "Temp-Pa55word-3", soon, "nobody", False)


def test_iam_on_serverless_gets_credentials_for_the_workgroup(standin, monkeypatch):
    """The driver's Serverless GetCredentials request (checked against the real service model), and the
    connection made with its answer."""
    from redshift_connector.iam_helper import IamHelper

    standin.serverless = True
    login, password = "IAMR:sparkify-runner", "Serverless-Temp-Pa55word"
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    client = boto3.client("redshift-serverless", region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    stubber = Stubber(client)
    stubber.add_response("get_credentials", {"dbUser": login, "dbPassword": password, "expiration": expires},
                         expected_params={"workgroupName": "sparkify-wg", "dbName": standin.database})
    monkeypatch.setattr(IamHelper, "get_boto3_redshift_client", staticmethod(lambda provider, info: client))
    IamHelper.credentials_cache.clear()
    # What the workgroup does when it issues those credentials: the login works as the mapped user.
    standin.grant_temporary_login(login, password, expires, standin.user, True)
    warehouse = RedshiftWarehouse(host=standin.host, port=standin.port, database=standin.database, auth="iam",
                                  workgroup="sparkify-wg", iam_role_arn="arn:aws:iam::123456789012:role/r",
                                  region=REGION)
    with stubber, warehouse.session() as s:
        assert s.execute("SELECT session_user, current_user") == [(login, standin.user)]
        # Serverless: rejects come from the SYS view; the STL one does not exist here.
        assert s.execute("SELECT count(*) FROM sys_load_error_detail WHERE session_id = pg_backend_pid()") == [(0,)]
    stubber.assert_no_pending_responses()


def test_iam_on_serverless_end_to_end_needs_the_grant_the_readme_names(standin, aws, tmp_path):
    """A run with REDSHIFT_AUTH=iam on a workgroup: the driver's GetCredentials goes to the Serverless
    control plane (``serverless_api.py``), which answers for the caller's IAM identity; that identity is
    a database user of its own, so its first run stops at the analytics schema until the admin grants
    CREATE ON DATABASE, as the README says; then it loads what the embedded engine loads."""
    standin.serverless = True
    root = tmp_path / "raw"
    generate_dataset(root, songs=30, users=5, days=2, events_per_day=40, seed=22)
    upload_tree(aws["s3"], BUCKET, root, "iam-serverless")
    data_uri = f"s3://{BUCKET}/iam-serverless"
    plane = ServerlessControlPlane(aws["endpoint"], REGION, polls_until_available=0, on_credentials=(
        lambda login, password, expires: standin.grant_temporary_login(login, password, expires, login, True)))
    with ServerlessApiServer(plane) as api:
        client = boto3.client("redshift-serverless", endpoint_url=api.url, region_name=REGION,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_namespace(namespaceName="sparkify-ns", dbName=standin.database)
        client.create_workgroup(workgroupName="sparkify-wg", namespaceName="sparkify-ns", baseCapacity=8)
        client.get_workgroup(workgroupName="sparkify-wg")  # AVAILABLE from now on
        env = _iam_env(standin, aws, data_uri, tmp_path / "home", REDSHIFT_WORKGROUP="sparkify-wg",
                       AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS=api.url)
        first = materialize(env)
        assert first.returncode != 0
        assert "permission denied for database" in first.stdout + first.stderr
        standin.admin(f'GRANT CREATE ON DATABASE {standin.database} TO "IAM:moto"')  # the README's grant
        standin.statements.clear()
        done = materialize(env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert {c["user"] for c in standin.statements.connections} == {"IAM:moto"}
    asked = [request for operation, request in plane.calls if operation == "GetCredentials"]
    assert asked and all(r == {"workgroupName": "sparkify-wg", "dbName": standin.database} for r in asked)
    assert not standin.statements.count(r"\bstl_")
    build_embedded(tmp_path / "serverless.duckdb", data_uri, aws["endpoint"])
    # The tables are the IAM identity's: the test reads them as the stand-in's own user once granted.
    standin.admin(f"GRANT USAGE ON SCHEMA analytics TO {standin.user}; "
                  f"GRANT SELECT ON ALL TABLES IN SCHEMA public, analytics TO {standin.user}")
    assert_same_tables(redshift_tables(standin), duckdb_tables(tmp_path / "serverless.duckdb"))
    owners = {r[0] for r in standin.admin("SELECT tableowner FROM pg_tables WHERE schemaname = 'analytics'")}
    assert owners == {"IAM:moto"}
