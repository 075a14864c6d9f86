"""What maintaining analytics.top_songs from a day's songplays would cost, against rebuilding it (a sketch
for the design in benchmarks/README.md, seventh pass; not the project's code).

    python benchmarks/analytics_delta_sketch.py WAREHOUSE.duckdb

On a copy of a loaded warehouse: the last day's songplays are set apart as the "new day"; the state a
maintained top_songs needs, (song_id, user_id, plays) pairs and per-song totals, is built from the other
days; then the day is applied to it (signed pair counts merged, totals recomputed for the songs it
touched) and the top 10 read. Prints each statement's seconds and whether the totals equal a rebuild.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

TOP_SONGS = ("SELECT song_id, COUNT(*) AS plays, COUNT(DISTINCT user_id) AS listeners FROM songplays "
             "WHERE song_id IS NOT NULL GROUP BY song_id")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouse", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sparkify-delta-sketch-"))
    shutil.copy(args.warehouse, work / "wh.duckdb")
    con = duckdb.connect(str(work / "wh.duckdb"))
    con.execute("SET memory_limit = '1200MB'")

    def timed(name: str, sql: str) -> list:
        start = time.perf_counter()
        rows = con.execute(sql).fetchall()
        print(f"{time.perf_counter() - start:7.3f} s  {name}")
        return rows

    (last,), = con.execute("SELECT max(start_time)::DATE FROM songplays").fetchall()
    con.execute(f"CREATE TABLE history AS SELECT * FROM songplays WHERE start_time::DATE < DATE '{last}'")
    con.execute(f"CREATE TABLE day AS SELECT *, 1 AS sign FROM songplays WHERE start_time::DATE = DATE '{last}'")
    (history, day), = con.execute("SELECT (SELECT count(*) FROM history), (SELECT count(*) FROM day)").fetchall()
    print(f"songplays: {history:,} before the last day, {day:,} on it ({last})")
    timed("rebuild: the top_songs aggregate over every songplay (today's way)", f"{TOP_SONGS} ORDER BY 2 DESC, 1 LIMIT 10")
    timed("state: (song, user) pairs from history", "CREATE TABLE pairs AS SELECT song_id, user_id, COUNT(*) AS n "
          "FROM history WHERE song_id IS NOT NULL GROUP BY ALL")
    timed("state: per-song totals from the pairs", "CREATE TABLE totals AS SELECT song_id, SUM(n) AS plays, "
          "COUNT(*) AS listeners FROM pairs GROUP BY song_id")
    (pairs,), = con.execute("SELECT count(*) FROM pairs").fetchall()
    print(f"pairs: {pairs:,}")
    def apply_day(totals_by_delta: bool) -> None:
        con.execute("BEGIN")
        start = time.perf_counter()
        timed("delta: the day's signed pair counts", "CREATE TEMP TABLE d AS SELECT song_id, user_id, SUM(sign) AS n "
              "FROM day WHERE song_id IS NOT NULL GROUP BY ALL")
        timed("merge: the pairs new to the state", "CREATE TEMP TABLE new_pairs AS SELECT d.* FROM d "
              "ANTI JOIN pairs USING (song_id, user_id)")
        timed("merge: pairs already there", "UPDATE pairs SET n = pairs.n + d.n FROM d "
              "WHERE pairs.song_id = d.song_id AND pairs.user_id = d.user_id")
        timed("merge: new pairs inserted", "INSERT INTO pairs SELECT * FROM new_pairs")
        timed("merge: pairs at zero", "CREATE TEMP TABLE zeroed AS SELECT song_id FROM pairs WHERE n = 0")
        timed("merge: those deleted", "DELETE FROM pairs WHERE n = 0")
        if totals_by_delta:
            # plays change by the day's count; listeners by the pairs that appeared less those gone to zero.
            timed("totals: changed by the day's counts", "CREATE TEMP TABLE td AS SELECT song_id, SUM(p) AS p, SUM(l) AS l "
                  "FROM (SELECT song_id, n AS p, 0 AS l FROM d UNION ALL SELECT song_id, 0, 1 FROM new_pairs "
                  "UNION ALL SELECT song_id, 0, -1 FROM zeroed) GROUP BY song_id")
            timed("totals: updated", "UPDATE totals SET plays = totals.plays + td.p, listeners = totals.listeners + td.l "
                  "FROM td WHERE totals.song_id = td.song_id")
            timed("totals: songs new to them inserted", "INSERT INTO totals SELECT song_id, p, l FROM td ANTI JOIN totals USING (song_id)")
            timed("totals: songs with no play left deleted", "DELETE FROM totals WHERE plays = 0")
        else:
            timed("totals: the rows of the songs the day touched, deleted",
                  "DELETE FROM totals WHERE song_id IN (SELECT song_id FROM d)")
            timed("totals: those songs recomputed from their pairs", "INSERT INTO totals SELECT song_id, SUM(n), "
                  "COUNT(*) FROM pairs WHERE song_id IN (SELECT song_id FROM d) GROUP BY song_id")
        timed("top 10 from the totals", "SELECT * FROM totals ORDER BY plays DESC, song_id LIMIT 10")
        timed("COMMIT (the changed pairs and totals written)", "COMMIT")
        print(f"{time.perf_counter() - start:7.3f} s  the day applied, in one transaction")

    con.execute("CHECKPOINT")
    for table in ("pairs", "totals"):  # the state before the day, to apply it again the other way
        con.execute(f"CREATE TABLE {table}_before AS SELECT * FROM {table}")
    print("-- the touched songs' totals recomputed from their pairs")
    apply_day(totals_by_delta=False)
    (differ_recomputed,), = con.execute(f"SELECT count(*) FROM (SELECT * FROM totals EXCEPT {TOP_SONGS})").fetchall()
    for table in ("pairs", "totals"):
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE {table}_before RENAME TO {table}")
    for temp in ("d", "new_pairs", "zeroed"):
        con.execute(f"DROP TABLE {temp}")
    con.execute("CHECKPOINT")
    print("-- the totals changed by the day's counts")
    apply_day(totals_by_delta=True)
    (differ,), = con.execute(f"SELECT count(*) FROM (SELECT * FROM totals EXCEPT {TOP_SONGS})").fetchall()
    print(f"totals that differ from a rebuild: {differ_recomputed} (recomputed), {differ} (changed by counts)")
    con.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0 if differ == differ_recomputed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
