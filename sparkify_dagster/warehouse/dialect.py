"""How SQL is spelled for each engine: quoting, types, DDL and the few expressions that differ.

Plain Python (no Dagster): the asset graph, ``sparkify-sql`` and ``benchmarks/floor.py`` share it.
"""

from __future__ import annotations

import re

from sparkify_dagster.catalog import Table

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def quote_ident(name: str) -> str:
    """Double-quote a catalog identifier; refuse anything that is not a plain lowercase name."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid identifier: {name!r}")
    return f'"{name}"'


def quote_literal(value: str) -> str:
    """A SQL string literal (standard quoting: ' doubled). Used for values we cannot bind."""
    return "'" + str(value).replace("'", "''") + "'"


def relation(table: Table) -> str:
    """A table's quoted name, schema-qualified when the table names a schema: "analytics"."top_songs"."""
    name = quote_ident(table.name)
    return f"{quote_ident(table.schema)}.{name}" if table.schema else name


def replace_statements(table: Table, select_sql: str) -> list[str]:
    """DELETE+INSERT (never TRUNCATE, which commits on Redshift), run inside one transaction."""
    cols = ", ".join(quote_ident(c) for c in table.column_names)
    return [f"DELETE FROM {relation(table)}", f"INSERT INTO {relation(table)} ({cols})\n{select_sql}"]


class Dialect:
    """Spelling of types, DDL and the few expressions that differ between engines."""

    name = "ansi"
    types: dict[str, str] = {}
    # Written between "name AS" and "(" for a CTE that several parts of a query read: "" lets the
    # engine choose (Redshift has no hint).
    inline_cte = ""

    def column_type(self, logical: str) -> str:
        if logical.startswith("varchar("):
            return self.varchar(logical)
        return self.types[logical]

    def varchar(self, logical: str) -> str:
        return logical.upper()

    def table_options(self, table: Table) -> str:
        return ""

    def constraints(self, table: Table) -> list[str]:
        return []

    def create_table(self, table: Table) -> str:
        cols = [
            f"    {quote_ident(c.name)} {self.column_type(c.type)}{' NOT NULL' if c.not_null else ''}"
            for c in table.columns
        ]
        body = ",\n".join(cols + [f"    {c}" for c in self.constraints(table)])
        return f"CREATE TABLE IF NOT EXISTS {relation(table)} (\n{body}\n){self.table_options(table)}"

    def lock_statements(self, tables) -> list[str]:
        """What a write transaction runs first to hold its tables for itself (none by default)."""
        return []

    def epoch_ms_to_timestamp(self, expr: str) -> str:
        raise NotImplementedError


class DuckDBDialect(Dialect):
    name = "duckdb"
    # varchar(n) is not enforced by DuckDB; the JSON loader enforces the byte limit instead.
    types = {"integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE", "timestamp": "TIMESTAMP"}
    # DuckDB materializes a CTE read more than once: for songplays that wrote every event's columns
    # out and spilled under the memory limit (large: 11.6 s; recomputed where read: 3.4 s).
    inline_cte = "NOT MATERIALIZED "

    def varchar(self, logical: str) -> str:
        return "VARCHAR"

    def epoch_ms_to_timestamp(self, expr: str) -> str:
        return f"epoch_ms({expr})"
