"""How SQL is spelled for each engine: quoting, types, DDL and the few expressions that differ.

The one place where the two engines' SQL spellings sit side by side (``DuckDBDialect``,
``RedshiftDialect``); the engines themselves are ``duckdb.py`` and ``redshift.py``. Plain Python (no
Dagster, no driver): the warehouse engines, ``sparkify-sql`` and ``benchmarks/floor.py`` share it.
"""

from __future__ import annotations

import re

from collections.abc import Sequence

from sparkify_dagster.catalog import CATALOG, Table

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

    def keys_maybe_repeated_sql(self, relation_sql: str, keys: Sequence[str]) -> str | None:
        """A query cheaper than grouping by ``keys`` that returns 0 only when no two rows of the
        relation share them (anything else: maybe some do); None when the engine has none."""
        return None

    def constraints(self, table: Table) -> list[str]:
        return []

    def create_table(self, table: Table) -> str:
        cols = [
            f"    {quote_ident(c.name)} {self.column_type(c.type)}{' NOT NULL' if c.not_null else ''}"
            for c in table.columns
        ]
        body = ",\n".join(cols + [f"    {c}" for c in self.constraints(table)])
        return f"CREATE TABLE IF NOT EXISTS {relation(table)} (\n{body}\n){self.table_options(table)}"

    def lock_statements(self, tables: Sequence[Table]) -> list[str]:
        """What a write transaction runs first to hold its tables for itself (none by default)."""
        return []

    def epoch_ms_to_timestamp(self, expr: str) -> str:
        raise NotImplementedError

    # Whether ``set_digest`` exists: without it, the incremental star update records every entry.
    has_set_digest = False

    def set_digest(self, expr: str) -> str:
        """An aggregate of ``expr`` over rows that changes when any row changes, whatever their order
        (the incremental star update's digest of the song files' manifest)."""
        raise NotImplementedError(f"{self.name}: no order-independent digest")

    def insert_strings(self, target: str, rows: Sequence[Sequence[str]]) -> tuple[str, list]:
        """An INSERT of string rows into ``target`` (a relation of that many VARCHAR columns), with its
        parameters: one multi-row VALUES list."""
        width = len(rows[0])
        values = ", ".join(["(" + ", ".join(["?"] * width) + ")"] * len(rows))
        return f"INSERT INTO {target} VALUES {values}", [v for row in rows for v in row]


class DuckDBDialect(Dialect):
    name = "duckdb"
    # varchar(n) is not enforced by DuckDB; the JSON loader enforces the byte limit instead.
    types = {"integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE", "timestamp": "TIMESTAMP"}
    # DuckDB materializes a CTE read more than once: for songplays that wrote every event's columns
    # out and spilled under the memory limit; recomputed where it is read, it does not (figures in
    # benchmarks/README.md).
    inline_cte = "NOT MATERIALIZED "

    def varchar(self, logical: str) -> str:
        return "VARCHAR"

    def epoch_ms_to_timestamp(self, expr: str) -> str:
        return f"epoch_ms({expr})"

    has_set_digest = True

    def keys_maybe_repeated_sql(self, relation_sql: str, keys: Sequence[str]) -> str | None:
        # Grouping by one 64-bit hash is cheaper than by the key's strings: distinct hashes prove
        # distinct keys (NULL keys hash alike, as GROUP BY puts them together); a shared hash is a
        # repeated key or a collision, which the exact query tells apart.
        return (f"SELECT COUNT(*) FROM (SELECT hash({', '.join(keys)}) AS h FROM {relation_sql} "
                f"GROUP BY h HAVING COUNT(*) > 1) AS d")

    def set_digest(self, expr: str) -> str:
        return f"coalesce(bit_xor(hash({expr})), 0)"

    def insert_strings(self, target: str, rows: Sequence[Sequence[str]]) -> tuple[str, list]:
        # One list per column, unnested: a VALUES list of thousands of parameters parses slowly.
        columns = list(zip(*rows))
        select = ", ".join(["unnest(?::VARCHAR[])"] * len(columns))
        return f"INSERT INTO {target} SELECT {select}", [list(c) for c in columns]


class RedshiftDialect(Dialect):
    name = "redshift"
    types = {"integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE PRECISION", "timestamp": "TIMESTAMP"}

    def constraints(self, table: Table) -> list[str]:
        # Informational on Redshift (not enforced); the planner uses it. Uniqueness is an asset check.
        if not table.primary_key:
            return []
        return [f"PRIMARY KEY ({', '.join(quote_ident(c) for c in table.primary_key)})"]

    def table_options(self, table: Table) -> str:
        opts = f" DISTSTYLE {table.diststyle}"
        if table.distkey:
            opts += f" DISTKEY ({quote_ident(table.distkey)})"
        if table.sortkey:
            opts += f" SORTKEY ({', '.join(quote_ident(c) for c in table.sortkey)})"
        return opts

    def epoch_ms_to_timestamp(self, expr: str) -> str:
        return f"TIMESTAMP 'epoch' + ({expr}) * INTERVAL '0.001 second'"

    def lock_statements(self, tables: Sequence[Table]) -> list[str]:
        # One statement, in catalog order: two transactions that lock overlapping sets wait for each
        # other instead of deadlocking. Runs before the transaction reads anything, so a transaction
        # that waited sees what the other committed (its snapshot starts after the lock).
        if not tables:
            return []
        order = {t.name: n for n, t in enumerate(CATALOG)}
        ordered = sorted({relation(t): t for t in tables}.values(), key=lambda t: (order.get(t.name, len(order)), t.name))
        return [f"LOCK {', '.join(relation(t) for t in ordered)}"]
