"""Asset checks on every warehouse table, and the checks-only job that verifies a warehouse as it is.

Checks that guard correctness are blocking: when one fails, the assets downstream of the checked
table are not materialized, so a bad staging load does not flow into the star schema.

Every check derives from the catalog record of its table: a staging table's counts against the
load manifest; a star table's primary key and required columns; each column's accepted values; each
foreign key (on the table built later of the two, so both are in their new state).

Each check is a ``check_specs`` entry of the asset it checks and runs in that asset's step, right
after the table is built (one step per table instead of one per check: each step has a fixed cost;
figures in benchmarks/README.md). The assets can be subset, so the checks-only job runs the checks
alone.
"""


from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg

from sparkify_dagster.catalog import (
    CATALOG,
    LOAD_ERRORS,
    LOADED_FILES,
    TABLES,
    Column,
    Layer,
    Table,
    upstream_of,
)
from sparkify_dagster.metadata import sample_table
from sparkify_dagster.warehouse.base import Warehouse
from sparkify_dagster.warehouse.dialect import quote_ident, quote_literal, relation

CHECKS_JOB_NAME = "data_quality_checks"
SAMPLE_ROWS = 5


def _violations(warehouse: Warehouse, count_sql: str, sample_sql: str, columns: list[str],
                description: str, table: Table | None = None, pretest_sql: str | None = None) -> dg.AssetCheckResult:
    """Pass when count_sql returns 0; otherwise show how many rows violate and a few of them.
    ``pretest_sql``: a cheaper query that returns 0 only when count_sql would (then count_sql is not run)."""
    warehouse.ensure_tables()
    if table is not None and table.schema:  # a table in its own schema (analytics) is ensured apart
        warehouse.ensure_tables([table])
    cleared = pretest_sql is not None and warehouse.query(pretest_sql)[0][0] == 0
    bad = 0 if cleared else warehouse.query(count_sql)[0][0]
    metadata: dict = {"violations": bad}
    if bad:
        sample = warehouse.query(f"{sample_sql} LIMIT {SAMPLE_ROWS}")
        metadata["sample"] = sample_table([dict(zip(columns, r)) for r in sample], table)
    return dg.AssetCheckResult(passed=bad == 0, metadata=metadata, description=f"{bad} violation(s): {description}")


@dataclass(frozen=True)
class TableCheck:
    """One check of a warehouse table: it runs in the step that builds the table (right after it)."""

    table: str
    name: str
    description: str
    body: Callable[[Warehouse], dg.AssetCheckResult]
    blocking: bool = True
    # WARN: a failure is shown (and the checks job still succeeds), nothing is stopped.
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR

    @property
    def spec(self) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(name=self.name, asset=self.table, description=self.description,
                                 blocking=self.blocking)

    def run(self, warehouse: Warehouse) -> dg.AssetCheckResult:
        result = self.body(warehouse)
        return dg.AssetCheckResult(asset_key=dg.AssetKey(self.table), check_name=self.name, passed=result.passed,
                                   metadata=result.metadata, description=result.description,
                                   severity=self.severity)


def primary_key_checks(table: Table) -> list[TableCheck]:
    name, keys = quote_ident(table.name), [quote_ident(k) for k in table.primary_key]
    key_list = ", ".join(keys)
    required = [c.name for c in table.columns if c.not_null or c.name in table.primary_key]
    any_null = " OR ".join(f"{quote_ident(c)} IS NULL" for c in required)
    dup_sql = f"SELECT {key_list}, COUNT(*) AS n FROM {name} GROUP BY {key_list} HAVING COUNT(*) > 1"
    return [
        TableCheck(
            table.name, "primary_key_unique", f"{', '.join(table.primary_key)} identifies one row.",
            lambda w: _violations(
                w, f"SELECT COUNT(*) FROM ({dup_sql}) AS d", dup_sql, [*table.primary_key, "rows"],
                "Duplicate primary keys.", pretest_sql=w.dialect.keys_maybe_repeated_sql(name, keys),
            ),
        ),
        TableCheck(
            table.name, "required_columns_not_null", f"{', '.join(required)} never null.",
            lambda w: _violations(
                w, f"SELECT COUNT(*) FROM {name} WHERE {any_null}", f"SELECT * FROM {name} WHERE {any_null}",
                table.column_names, "Rows with a null in a required column.",
            ),
        ),
    ]


def foreign_key_check(table: Table, column: str, target: Table, on: str | None = None) -> TableCheck:
    """Every non-null table.column exists in target's primary key. The check lives on ``on``."""
    src, dst = quote_ident(table.name), quote_ident(target.name)
    col, key = quote_ident(column), quote_ident(target.primary_key[0])
    orphans = (
        f"SELECT DISTINCT s.{col} FROM {src} AS s LEFT JOIN {dst} AS t ON t.{key} = s.{col} "
        f"WHERE s.{col} IS NOT NULL AND t.{key} IS NULL"
    )
    owner = on or table.name
    name = f"{column}_in_{target.name}" if owner == table.name else f"{table.name}_{column}_in_{target.name}"
    # No additional_deps: the graph already orders the tables, and without them a failing check
    # never stops another check from running in the checks-only job.
    return TableCheck(
        owner, name,
        f"Every non-null {table.name}.{column} has a row in {target.name}.",
        lambda w: _violations(w, f"SELECT COUNT(*) FROM ({orphans}) AS o", orphans, [column],
                              f"{table.name}.{column} values missing from {target.name}."),
    )


def accepted_values_check(table: Table, column: Column) -> TableCheck:
    name, col = quote_ident(table.name), quote_ident(column.name)
    values = column.accepted_values
    bad = f"{col} IS NULL OR {col} NOT IN ({', '.join(quote_literal(v) for v in values)})"
    return TableCheck(
        table.name, f"{column.name}_is_{'_or_'.join(values)}",
        f"{column.name} is {' or '.join(repr(v) for v in values)}.",
        lambda w: _violations(
            w, f"SELECT COUNT(*) FROM {name} WHERE {bad}",
            f"SELECT {col}, COUNT(*) FROM {name} WHERE {bad} GROUP BY {col}", [column.name, "rows"],
            f"Rows with a {column.name} other than {'/'.join(values)}.",
        ),
    )


def staging_count_check(table: Table) -> TableCheck:
    """Per loaded_files entry (a file, or Redshift's song manifest): rows in the staging table =
    records staged, read = staged + rejected, and the rejects are in load_errors (by load_unit)."""
    files = quote_ident(LOADED_FILES.name)
    lit = quote_literal(table.name)
    mismatches = (
        f"SELECT f.source_file, f.records_read, f.records_staged, f.records_rejected, "
        f"COALESCE(s.n, 0) AS rows_in_table, COALESCE(e.n, 0) AS rows_in_load_errors "
        f"FROM {files} AS f "
        f"LEFT JOIN (SELECT source_file, COUNT(*) AS n FROM {quote_ident(table.name)} GROUP BY source_file) AS s "
        f"  ON s.source_file = f.source_file "
        f"LEFT JOIN (SELECT load_unit, COUNT(*) AS n FROM {quote_ident(LOAD_ERRORS.name)} "
        f"  WHERE table_name = {lit} GROUP BY load_unit) AS e ON e.load_unit = f.source_file "
        f"WHERE f.table_name = {lit} AND (f.records_read <> f.records_staged + f.records_rejected "
        f"  OR COALESCE(s.n, 0) <> f.records_staged OR COALESCE(e.n, 0) < f.records_rejected)"
    )
    strays = (
        f"SELECT s.source_file FROM {quote_ident(table.name)} AS s LEFT JOIN {files} AS f "
        f"ON f.table_name = {lit} AND f.source_file = s.source_file WHERE f.source_file IS NULL"
    )

    def body(w: Warehouse) -> dg.AssetCheckResult:
        result = _violations(
            w, f"SELECT (SELECT COUNT(*) FROM ({mismatches}) AS m) + (SELECT COUNT(*) FROM ({strays}) AS x)",
            mismatches,
            ["source_file", "records_read", "records_staged", "records_rejected", "rows_in_table",
             "rows_in_load_errors"],
            "Files whose staged rows differ from the records read.",
        )
        read, staged, rejected = w.query(
            f"SELECT COALESCE(SUM(records_read), 0), COALESCE(SUM(records_staged), 0), "
            f"COALESCE(SUM(records_rejected), 0) FROM {files} WHERE table_name = {lit}"
        )[0]
        rejects = w.query(
            f"SELECT source_file, line_number, column_name, reason FROM {quote_ident(LOAD_ERRORS.name)} "
            f"WHERE table_name = {lit} ORDER BY source_file, line_number LIMIT 20"
        )
        metadata = {
            **result.metadata,
            "records_read": read,
            "records_staged": staged,
            "records_rejected": rejected,
            "rejects": sample_table(
                [dict(zip(("source_file", "line_number", "column_name", "reason"), r)) for r in rejects], LOAD_ERRORS
            ),
        }
        return dg.AssetCheckResult(passed=result.passed, metadata=metadata, description=result.description)

    return TableCheck(table.name, "records_read_equal_staged_plus_rejected",
                  "Every record read is either a staging row or a load_errors row, file by file.", body)


def _literal(value: object) -> str:
    return str(int(value)) if isinstance(value, int) else quote_literal(str(value))


def every_key_check(table: Table) -> TableCheck:
    """One row for each value the record's ``every_key`` lists, and no other row (e.g. 24 hours)."""
    rel, key = relation(table), quote_ident(table.primary_key[0])
    expected = " UNION ALL ".join(f"SELECT {_literal(v)} AS k" for v in table.every_key)
    problems = (
        f"SELECT e.k AS key_value, 'missing' AS problem FROM ({expected}) AS e "
        f"WHERE e.k NOT IN (SELECT {key} FROM {rel} WHERE {key} IS NOT NULL) "
        f"UNION ALL SELECT t.{key}, 'not expected' FROM {rel} AS t "
        f"WHERE t.{key} IS NULL OR t.{key} NOT IN (SELECT k FROM ({expected}) AS e2) "
        f"UNION ALL SELECT {key}, 'repeated' FROM {rel} GROUP BY {key} HAVING COUNT(*) > 1"
    )
    values = table.every_key
    shown = f"{values[0]}..{values[-1]}" if all(isinstance(v, int) for v in values) else "/".join(values)
    return TableCheck(
        table.name, f"one_row_per_{table.primary_key[0]}",
        f"Exactly {len(values)} rows: one per {table.primary_key[0]} ({shown}), none missing, none other.",
        lambda w: _violations(w, f"SELECT COUNT(*) FROM ({problems}) AS p", problems,
                              [table.primary_key[0], "problem"],
                              f"{table.primary_key[0]} values missing, repeated or not expected.", table),
    )


def max_rows_check(table: Table) -> TableCheck:
    """A top-N table holds at most N rows."""
    rel, key = relation(table), quote_ident(table.primary_key[0])
    beyond = (f"SELECT * FROM (SELECT t.*, ROW_NUMBER() OVER (ORDER BY t.{key}) AS row_number_ FROM {rel} AS t) "
              f"AS r WHERE r.row_number_ > {int(table.max_rows)}")
    return TableCheck(
        table.name, f"at_most_{table.max_rows}_rows", f"At most {table.max_rows} rows (a top {table.max_rows}).",
        lambda w: _violations(w, f"SELECT COUNT(*) FROM ({beyond}) AS b", beyond,
                              [*table.column_names, "row_number"], f"Rows beyond the top {table.max_rows}.", table),
    )


def plays_add_up_check(table: Table) -> TableCheck:
    """A breakdown of every songplay (by hour, weekday, level, platform): its plays sum to songplays' rows.

    A warning, not a stop: nothing is built from the analytics tables, and the checks-only job may
    compare them with a songplays that a newer load has replaced (the next run rebuilds them)."""
    rel, songplays = relation(table), relation(TABLES["songplays"])
    totals = (f"SELECT (SELECT COALESCE(SUM(plays), 0) FROM {rel}) AS plays_in_table, "
              f"(SELECT COUNT(*) FROM {songplays}) AS songplays")
    return TableCheck(
        table.name, "plays_add_up_to_songplays", "Its plays add up to the number of songplays.",
        lambda w: _violations(
            w, f"SELECT CASE WHEN t.plays_in_table = t.songplays THEN 0 ELSE 1 END FROM ({totals}) AS t",
            totals, ["plays_in_table", "songplays"], "plays in the table differ from the songplays.", table,
        ),
        blocking=False, severity=dg.AssetCheckSeverity.WARN,
    )


def checks_from_catalog(table: Table) -> list[TableCheck]:
    """The checks a table's record implies, in the order they run."""
    checks = [staging_count_check(table)] if table.layer is Layer.STAGING else []
    if table.layer is Layer.STAR and table.primary_key:
        checks += primary_key_checks(table)
    checks += [accepted_values_check(table, c) for c in table.columns if c.accepted_values]
    checks += [every_key_check(table)] if table.every_key else []
    checks += [max_rows_check(table)] if table.max_rows is not None else []
    checks += [plays_add_up_check(table)] if table.plays_add_up else []
    return checks


def build_checks() -> list[TableCheck]:
    checks = [check for table in CATALOG for check in checks_from_catalog(table)]
    for table in CATALOG:
        for column, target_name in table.foreign_keys.items():
            target = TABLES[target_name]
            # A target built from the table itself (time from songplays) is checked once it is built.
            owner = target.name if table.name in upstream_of(target) else None
            checks.append(foreign_key_check(table, column, target, on=owner))
    return checks


CHECKS: tuple[TableCheck, ...] = tuple(build_checks())


def checks_of(table: str) -> list[TableCheck]:
    """The checks that run in ``table``'s step."""
    return [c for c in CHECKS if c.table == table]


def check_specs(table: str) -> list[dg.AssetCheckSpec]:
    return [c.spec for c in checks_of(table)]


def run_selected_checks(context: dg.AssetExecutionContext, warehouse: Warehouse,
                        table: str) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of ``table`` (all of them in a normal run; only they in the checks job)."""
    selected = context.selected_asset_check_keys
    for check in checks_of(table):
        if check.spec.key in selected:
            yield check.run(warehouse)


data_quality_checks_job = dg.define_asset_job(
    CHECKS_JOB_NAME,
    selection=dg.AssetSelection.all_asset_checks(),
    description="Run every asset check against the warehouse as it is now, without reloading anything.",
)
