"""Temporary database credentials for the stand-in: what Redshift trusts because its control plane
issued them.

``moto_issues_logins(standin)`` wraps moto's GetClusterCredentials (moto runs in this process, as
``ThreadedMotoServer``): each answer it gives is also granted on the stand-in as a login valid until
the answer's expiration, working as the database user it names (``grant_temporary_login``). A client
that gets credentials any other way, or too late, is refused by PostgreSQL itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sparkify_dagster_tests.redshift_standin.standin import RedshiftStandin


@contextmanager
def moto_issues_logins(standin: RedshiftStandin) -> Iterator[list[dict]]:
    """While active, moto's GetClusterCredentials answers log in to ``standin``; yields the answers."""
    from moto.redshift.models import RedshiftBackend

    original = RedshiftBackend.get_cluster_credentials
    issued: list[dict] = []

    def issue(backend, cluster_identifier, db_user, auto_create, duration_seconds):
        credentials = original(backend, cluster_identifier, db_user, auto_create, duration_seconds)
        standin.grant_temporary_login(credentials["DbUser"], credentials["DbPassword"],
                                      credentials["Expiration"], db_user, auto_create)
        issued.append({"cluster": cluster_identifier, "db_user": db_user, "auto_create": auto_create,
                       "login": credentials["DbUser"]})
        return credentials

    RedshiftBackend.get_cluster_credentials = issue
    try:
        yield issued
    finally:
        RedshiftBackend.get_cluster_credentials = original
