"""Column-level lineage read from a table's SQL file: which columns of its inputs each column comes from.

Nothing is declared beside the SQL: the transform is rendered for the bound engine's dialect, parsed
by sqlglot with the catalog as its schema (so ``SELECT e.*`` resolves), and every column of the
final SELECT is traced back to the columns of the catalog tables it reads. A change to the SQL is a
change to the lineage the UI shows. Join and filter columns are not lineage (they choose rows, they
do not make a value); a column made of constants (an hour of a literal list) has none. A condition
inside the value's own expression does count: songplays.song_id is ``CASE WHEN ABS(duration - length)
<= 0.01 THEN song_id END``, so it names staging_events.length and staging_songs.duration beside
staging_songs.song_id (they decide whether there is a song at all).
"""

from __future__ import annotations

from functools import lru_cache

import dagster as dg

from sparkify_dagster.catalog import TABLES, Table
from sparkify_dagster.warehouse.dialect import Dialect
from sparkify_dagster.warehouse.transforms import render


def _catalog_schema() -> dict:
    schema: dict = {}
    for t in TABLES.values():  # sqlglot needs names only; the types do not change lineage
        schema.setdefault(t.schema or "main", {})[t.name] = {c.name: "text" for c in t.columns}
    return schema


@lru_cache(maxsize=None)
def column_sources(table_name: str, dialect_name: str, sql: str) -> dict[str, tuple[tuple[str, str], ...]]:
    """For each column of the table's SELECT: the (table, column) pairs of catalog tables it is made from."""
    from sqlglot import exp, parse_one
    from sqlglot.lineage import lineage
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.scope import build_scope

    schema = _catalog_schema()
    # Qualified once, so tracing each column does not re-qualify the whole query.
    expression = qualify(parse_one(sql, read=dialect_name), schema=schema, dialect=dialect_name,
                         validate_qualify_columns=False)
    nodes = lineage(None, expression, schema, dialect=dialect_name, scope=build_scope(expression))
    sources = {}
    for column in TABLES[table_name].column_names:
        found = set()
        for node in nodes[column].walk():
            if not node.downstream and isinstance(node.source, exp.Table) and node.source.name in TABLES:
                found.add((node.source.name, node.name.rsplit(".", 1)[-1].strip('"')))
        sources[column] = tuple(sorted(found))
    return sources


def column_lineage(table: Table, dialect: Dialect) -> dg.TableColumnLineage:
    """dagster/column_lineage of a table built by SQL, from its SQL rendered for ``dialect``."""
    sources = column_sources(table.name, dialect.name, render(table, dialect))
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(asset_key=dg.AssetKey(src), column_name=col) for src, col in deps]
            for column, deps in sources.items()
            if deps
        }
    )
