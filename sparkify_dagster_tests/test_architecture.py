"""The shape of the code: one record per table, no import circles, no import up a layer, and an asset
layer that never asks which engine it runs on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sparkify_dagster.assets.raw import RAW_ASSETS
from sparkify_dagster.catalog import CATALOG, TABLES, Layer

PACKAGE = Path(__file__).resolve().parents[1] / "sparkify_dagster"
# Lower layers never import higher ones; a module may import its own layer (without a circle).
LAYERS = [
    {"catalog", "jsonpath", "text"},
    {"source", "source_s3"},
    {"warehouse"},
    {"lineage", "metadata", "checks"},
    {"assets"},
    {"sensors"},
    {"definitions", "__init__"},
    {"cli"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The package modules a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            if name.startswith("sparkify_dagster."):
                module = name.removeprefix("sparkify_dagster.")
                if module in known:
                    found.add(module)
            elif name == "sparkify_dagster":
                found.add("__init__")
    return found


def _layer(module: str) -> int:
    top = module.split(".")[0]
    return next(n for n, layer in enumerate(LAYERS) if top in layer)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}


def test_no_import_runs_up_a_layer(graph):
    upward = [(m, i) for m, imports in graph.items() for i in imports if _layer(i) > _layer(m)]
    assert not upward, f"imports from a higher layer: {upward}"


def test_the_import_graph_has_no_circle(graph):
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                pytest.fail(f"import circle: {' -> '.join(path + [module, imported])}")
            if imported not in state:
                visit(imported, path + [module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_asset_layer_never_asks_which_engine_it_runs_on(graph):
    engines = {"warehouse.duckdb", "warehouse.redshift", "warehouse.json_loader", "warehouse.star_update"}
    for module, imports in graph.items():
        if module.startswith("assets"):
            assert not imports & engines, f"{module} imports an engine: {imports & engines}"
            text = _modules()[module].read_text()
            for word in ("incremental_star", "DuckDBDialect", "RedshiftDialect", "isinstance(warehouse"):
                assert word not in text, f"{module} mentions {word}"


def test_every_table_is_one_record_with_its_sql_file_and_known_inputs():
    raw = {spec.key.to_user_string() for spec in RAW_ASSETS}
    sql_dir = PACKAGE / "sql"
    for table in CATALOG:
        for source in table.built_from:
            assert source in TABLES or source in raw, f"{table.name} is built from an unknown {source!r}"
        assert bool(table.sql_file) == (table.layer in (Layer.STAR, Layer.ANALYTICS)), table.name
        if table.sql_file:
            assert (sql_dir / table.sql_file).is_file(), f"{table.name}: no sql/{table.sql_file}"
        assert (table.raw is not None) == (table.layer is Layer.STAGING), table.name
        for column, target in table.foreign_keys.items():
            assert column in table.column_names and TABLES[target].primary_key, (table.name, column)
    # No SQL file without its table (shared fragments start with an underscore).
    owned = {t.sql_file for t in CATALOG if t.sql_file}
    stray = [p.name for p in sql_dir.glob("*.sql") if not p.name.startswith("_") and p.name not in owned]
    assert not stray, f"SQL files that no catalog record owns: {stray}"
