"""Render the star-schema transforms (``sql/<table>.sql``, written once) for one engine's dialect.

Templates see ``ref(name)`` (a quoted catalog table) and ``d`` (the dialect's few engine-specific
expressions); ``sql/_song_records.sql`` is the one-record-per-song_id rule shared by three tables.
"""

from __future__ import annotations

import jinja2

from sparkify_dagster.catalog import TABLES
from sparkify_dagster.warehouse.dialect import Dialect, quote_ident

# The templates of sql/ (star transforms here, analytics in assets/analytics.py).
SQL_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("sparkify_dagster", "sql"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def _ref(name: str) -> str:
    if name not in TABLES:
        raise KeyError(f"ref() to a table that is not in the catalog: {name!r}")
    return quote_ident(name)


def transform_sql(table_name: str, dialect: Dialect, affected: str | None = None) -> str:
    """The SELECT that builds ``table_name``, rendered for ``dialect``.

    ``affected`` (users, songplays and time) names a relation of the keys to build, for an update
    that replaces just those rows (``assets/star_updates.py``); None builds the whole table."""
    return SQL_TEMPLATES.get_template(f"{table_name}.sql").render(ref=_ref, d=dialect, affected=affected).strip()
