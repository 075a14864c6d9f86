"""A test-only Redshift stand-in: PostgreSQL behind a TLS proxy that emulates what sparkify uses of Redshift.

See README.md in this folder. Entry points: ``RedshiftStandin`` (the server and its knobs) and the
module-scoped pytest fixture ``redshift_standin`` in ``fixtures.py``.
"""

from sparkify_dagster_tests.redshift_standin.copy_emulation import CopySettings
from sparkify_dagster_tests.redshift_standin.proxy import (
    LoggedStatement,
    StatementLog,
    describe_error,
)
from sparkify_dagster_tests.redshift_standin.server import (
    PostgresCluster,
    PostgresNotFound,
    find_bindir,
)
from sparkify_dagster_tests.redshift_standin.standin import (
    REDSHIFT_TRUST_POLICY,
    RedshiftStandin,
)

__all__ = [
    "REDSHIFT_TRUST_POLICY",
    "CopySettings",
    "LoggedStatement",
    "PostgresCluster",
    "PostgresNotFound",
    "RedshiftStandin",
    "StatementLog",
    "describe_error",
    "find_bindir",
]
