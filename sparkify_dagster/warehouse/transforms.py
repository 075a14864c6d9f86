"""Render a table's transform (its ``sql/`` file, written once) for one engine's dialect.

Templates see ``ref(name)`` (a catalog table, schema-qualified where it has a schema), ``d`` (the
dialect's few engine-specific expressions), ``affected`` (a relation of the keys to build, for an
incremental update; None builds the whole table) and the catalog's ``TEMPLATE_PARAMETERS``.
``sql/_song_records.sql`` is the one-record-per-song_id rule shared by three tables.
"""

from __future__ import annotations

import jinja2

from sparkify_dagster.catalog import TABLES, TEMPLATE_PARAMETERS, Table
from sparkify_dagster.warehouse.dialect import Dialect, relation, replace_statements

SQL_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("sparkify_dagster", "sql"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def ref(name: str) -> str:
    """The quoted relation of a catalog table, for ``{{ ref('name') }}``."""
    if name not in TABLES:
        raise KeyError(f"ref() to a table that is not in the catalog: {name!r}")
    return relation(TABLES[name])


def render(table: Table, dialect: Dialect, affected: str | None = None) -> str:
    """The SELECT that builds ``table`` (all of it, or the rows of the keys in ``affected``)."""
    if table.sql_file is None:
        raise ValueError(f"{table.name} is not built by SQL (it is a {table.layer.value} table)")
    template = SQL_TEMPLATES.get_template(table.sql_file)
    return template.render(ref=ref, d=dialect, affected=affected, **TEMPLATE_PARAMETERS).strip()


def transform_sql(table_name: str, dialect: Dialect, affected: str | None = None) -> str:
    """``render`` by table name."""
    return render(TABLES[table_name], dialect, affected)


def rebuild_statements(table: Table, dialect: Dialect) -> list[str]:
    """A full rebuild of ``table`` as one transaction: lock, DELETE, INSERT of its SELECT, COMMIT."""
    return ["BEGIN", *dialect.lock_statements([table]), *replace_statements(table, render(table, dialect)), "COMMIT"]
