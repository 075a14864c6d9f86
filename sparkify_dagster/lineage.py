"""Column-level lineage read from a table's SQL file: which columns of its inputs each column comes from.

Nothing is declared beside the SQL: the transform is rendered for the bound engine's dialect, parsed
by sqlglot with the catalog as its schema (so ``SELECT e.*`` resolves), and every column of the
final SELECT is traced back to the columns of the catalog tables it reads. A change to the SQL is a
change to the lineage the UI shows. Join and filter columns are not lineage (they choose rows, they
do not make a value); a column made of constants (an hour of a literal list) has none. A condition
inside the value's own expression does count: songplays.song_id is ``CASE WHEN ABS(duration - length)
<= 0.01 THEN song_id END``, so it names staging_events.length and staging_songs.duration beside
staging_songs.song_id (they decide whether there is a song at all).

Tracing takes sqlglot a few tenths of a second per code location load (its import included), paid by
every ``dagster asset materialize`` process; so each result is kept in a cache file named by the
digest of everything it depends on (the rendered SQL, the dialect, the catalog's column names, the
sqlglot version): an edited SQL file has a new digest and is traced again. The cache is
``$SPARKIFY_CACHE_DIR`` or ``$XDG_CACHE_HOME/sparkify-dagster`` (``~/.cache/sparkify-dagster``);
where it cannot be read or written, lineage is traced every time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import metadata as importlib_metadata
from pathlib import Path

import dagster as dg

from sparkify_dagster.catalog import TABLES, Table
from sparkify_dagster.warehouse.dialect import Dialect
from sparkify_dagster.warehouse.transforms import render


def _catalog_schema() -> dict:
    schema: dict = {}
    for t in TABLES.values():  # sqlglot needs names only; the types do not change lineage
        schema.setdefault(t.schema or "main", {})[t.name] = {c.name: "text" for c in t.columns}
    return schema


def cache_dir() -> Path:
    """Where traced lineage is kept (see the module docstring)."""
    explicit = os.environ.get("SPARKIFY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sparkify-dagster"


def _cache_file(table_name: str, dialect_name: str, sql: str) -> Path:
    key = json.dumps([table_name, dialect_name, sql, _catalog_schema(), importlib_metadata.version("sqlglot")],
                     sort_keys=True)
    return cache_dir() / f"lineage-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


@lru_cache(maxsize=None)
def column_sources(table_name: str, dialect_name: str, sql: str) -> dict[str, tuple[tuple[str, str], ...]]:
    """For each column of the table's SELECT: the (table, column) pairs of catalog tables it is made from
    (from the cache file of this very SQL when there is one)."""
    path = _cache_file(table_name, dialect_name, sql)
    try:
        cached = json.loads(path.read_text())
        return {column: tuple(tuple(pair) for pair in pairs) for column, pairs in cached.items()}
    except (OSError, ValueError, AttributeError, TypeError):  # absent, unreadable or not ours: trace again
        pass
    sources = trace_column_sources(table_name, dialect_name, sql)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as out:
            json.dump(sources, out)
        os.replace(out.name, path)  # whole or absent: a concurrent reader never sees half a file
    except OSError:
        pass
    return sources


def trace_column_sources(table_name: str, dialect_name: str, sql: str) -> dict[str, tuple[tuple[str, str], ...]]:
    """The lineage of the table's SELECT traced by sqlglot (what ``column_sources`` caches)."""
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
