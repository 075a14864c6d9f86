"""Render the star-schema transforms (``sql/<table>.sql``, written once) for one engine's dialect."""

from __future__ import annotations

from importlib.resources import files

import jinja2

from sparkify_dagster.catalog import TABLES
from sparkify_dagster.warehouse.base import Dialect, quote_ident

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def _ref(name: str) -> str:
    if name not in TABLES:
        raise KeyError(f"ref() to a table that is not in the catalog: {name!r}")
    return quote_ident(name)


def transform_sql(table_name: str, dialect: Dialect) -> str:
    """The SELECT that builds ``table_name``, rendered for ``dialect``."""
    text = files("sparkify_dagster").joinpath("sql", f"{table_name}.sql").read_text(encoding="utf-8")
    return _ENV.from_string(text).render(ref=_ref, d=dialect).strip()
