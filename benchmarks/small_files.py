"""Many small files (song_data: one ~270-byte JSON object per file): which way of reading is fastest?

    python benchmarks/small_files.py /tmp/sparkify-bench/medium/raw [--skip-read-json]

Each way reads every song file under <root>/song_data into DuckDB (one row per file with its text or
its typed columns) in a fresh in-memory database, in its own process (so peak RSS is its own), after
one untimed pass that warms the page cache. Prints wall and CPU seconds and peak RSS per way.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SONG_COLUMNS = {
    "num_songs": "INTEGER", "artist_id": "VARCHAR", "artist_latitude": "DOUBLE", "artist_longitude": "DOUBLE",
    "artist_location": "VARCHAR", "artist_name": "VARCHAR", "song_id": "VARCHAR", "title": "VARCHAR",
    "duration": "DOUBLE", "year": "INTEGER",
}

WAYS = {
    "duckdb read_json over the glob": "read_json",
    "duckdb read_text over the glob (+ from_json)": "read_text",
    "duckdb glob() only (listing, no reading)": "glob",
    "python os.walk + open/read, texts bound as one list (+ from_json)": "python",
    "python os.walk + open/read, one NDJSON temp file, duckdb read_json": "python_ndjson",
}


def run_way(way: str, root: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    pattern = str(root / "song_data" / "**" / "*.json")
    structure = json.dumps(SONG_COLUMNS)
    started, cpu = time.perf_counter(), time.process_time()
    if way == "read_json":
        n = con.execute(f"SELECT count(*) FROM read_json(?, format='auto', columns={_columns()}, filename=true)",
                        [pattern]).fetchone()[0]
    elif way == "read_text":
        n = con.execute(f"SELECT count(from_json(content, '{structure}')) FROM read_text(?)", [pattern]).fetchone()[0]
    elif way == "glob":
        n = con.execute("SELECT count(*) FROM glob(?)", [pattern]).fetchone()[0]
    elif way == "python":
        keys, texts = _read_all(root)
        con.execute("CREATE TABLE t AS SELECT unnest(?::VARCHAR[]) AS k, unnest(?::VARCHAR[]) AS txt", [keys, texts])
        del keys, texts
        n = con.execute(f"SELECT count(from_json(txt, '{structure}')) FROM t").fetchone()[0]
    elif way == "python_ndjson":
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"songs-{os.getpid()}.ndjson"
        with tmp.open("wb") as out:
            for dirpath, _dirs, names in os.walk(root / "song_data"):
                for name in names:
                    with open(os.path.join(dirpath, name), "rb") as handle:
                        out.write(handle.read().replace(b"\n", b" ") + b"\n")
        n = con.execute(f"SELECT count(*) FROM read_json(?, format='newline_delimited', columns={_columns()})",
                        [str(tmp)]).fetchone()[0]
        tmp.unlink()
    else:
        raise ValueError(way)
    return {"rows": n, "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu,
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _columns() -> str:
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in SONG_COLUMNS.items()) + "}"


def _read_all(root: Path) -> tuple[list[str], list[str]]:
    keys, texts = [], []
    for dirpath, _dirs, names in os.walk(root / "song_data"):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as handle:
                texts.append(handle.read().decode("utf-8"))
            keys.append(path)
    return keys, texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--skip-read-json", action="store_true", help="skip the slow read_json glob way")
    parser.add_argument("--way", help=argparse.SUPPRESS)  # internal: run one way in this process
    args = parser.parse_args()
    root = args.root.resolve()
    if args.way:
        print(json.dumps(run_way(args.way, root)))
        return 0
    _read_all(root)  # warm the page cache
    files = sum(len(names) for _d, _s, names in os.walk(root / "song_data"))
    print(f"{files:,} files under {root / 'song_data'}")
    print("| way | rows | wall s | CPU s | peak RSS MiB |\n|---|---:|---:|---:|---:|")
    for label, way in WAYS.items():
        if way == "read_json" and args.skip_read_json:
            continue
        out = subprocess.run([sys.executable, __file__, str(root), "--way", way], capture_output=True, text=True,
                             check=True).stdout
        r = json.loads(out)
        print(f"| {label} | {r['rows']:,} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['rss_mib']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
