"""pytest fixtures for the Redshift stand-in.

Import them into a test module explicitly::

    from sparkify_dagster_tests.redshift_standin.fixtures import redshift_standin  # noqa: F401

``redshift_standin`` is module-scoped (PostgreSQL starts once per module, ~1 s) and takes the moto
server from the ``s3_endpoint`` fixture of conftest.py. While the module runs, SSL_CERT_FILE names
the stand-in's trust bundle, so redshift-connector (and subprocesses) trust its certificate.

Without PostgreSQL server binaries the fixture skips, except when CI=true: CI installs them, so
their absence there is a failure.
"""

from __future__ import annotations

import os
import pwd

import pytest

from sparkify_dagster_tests.redshift_standin.server import (
    SUPERUSER,
    PostgresNotFound,
    find_bindir,
)
from sparkify_dagster_tests.redshift_standin.standin import RedshiftStandin


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Redshift stand-in unavailable on CI: {reason}")
    pytest.skip(f"Redshift stand-in unavailable: {reason}")


def _check_postgres() -> None:
    try:
        find_bindir()
    except PostgresNotFound as exc:
        _unavailable(str(exc))
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            _unavailable(f"running as root needs the '{SUPERUSER}' OS user (Debian package postgresql)")


@pytest.fixture(scope="module")
def redshift_standin(s3_endpoint):
    """A running ``RedshiftStandin`` for this test module (S3 and IAM: the module's moto server)."""
    _check_postgres()
    standin = RedshiftStandin(aws_endpoint_url=s3_endpoint).start()
    patch = pytest.MonkeyPatch()
    patch.setenv("SSL_CERT_FILE", standin.trust_bundle)
    try:
        yield standin
    finally:
        patch.undo()
        standin.stop()
