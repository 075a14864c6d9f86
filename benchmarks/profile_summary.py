"""Summarise a py-spy ``--format raw`` (collapsed stacks) profile: the hottest frames, inclusive and self.

    py-spy record -f raw -o full.txt -- python -m dagster asset materialize ...
    python benchmarks/profile_summary.py full.txt --top 25 [--match sparkify_dagster]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only frames whose text contains this")
    args = parser.parse_args()
    inclusive, self_time, total = Counter(), Counter(), 0
    for line in args.profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [re.sub(r"\s+", " ", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        self_time[frames[-1]] += n
    print(f"{total} samples")
    for title, counter in (("inclusive", inclusive), ("self", self_time)):
        print(f"\n--- {title} ---")
        shown = 0
        for frame, n in counter.most_common():
            if args.match in frame:
                print(f"{100 * n / total:5.1f}%  {frame[:150]}")
                shown += 1
                if shown >= args.top:
                    break


if __name__ == "__main__":
    main()
