"""Render a table's transform (its ``sql/`` file, written once) for one engine's dialect.

Templates see ``ref(name)`` (a catalog table, schema-qualified where it has a schema), ``d`` (the
dialect's few engine-specific expressions), ``affected`` (a relation of the keys to build, for an
incremental update; None builds the whole table) and the catalog's ``TEMPLATE_PARAMETERS``.
``sql/_song_records.sql`` is the one-record-per-song_id rule shared by three tables.
"""

from __future__ import annotations

import hashlib
import json

import jinja2
import jinja2.meta

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


def _template_sources(name: str, seen: set[str]) -> list[str]:
    """A template's source and, depth first, those of the templates it includes."""
    seen.add(name)
    source, _filename, _uptodate = SQL_TEMPLATES.loader.get_source(SQL_TEMPLATES, name)
    sources = [source]
    for included in sorted(jinja2.meta.find_referenced_templates(SQL_TEMPLATES.parse(source))):
        if included and included not in seen:
            sources += _template_sources(included, seen)
    return sources


def code_version(table: Table) -> str:
    """The version of a table's transform: a digest of its SQL file, the files it includes and the
    template parameters; an edit to any of them marks the table (and what is built from it) stale."""
    parts = [*_template_sources(table.sql_file, set()), json.dumps(TEMPLATE_PARAMETERS, sort_keys=True)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
