"""Redshift's JSONPath expressions (the paths of a COPY JSONPaths file), parsed once for every engine.

Redshift accepts bracket notation (``$['a']``, ``$["a"]``), dot notation (``$.a``) and array indexes
(``$['a'][0]``); no wildcards, filters or slices. A path is parsed into its steps (a key, or an index);
each engine spells the steps its own way (the embedded loader: ``json_loader.duckdb_path``).
"""

from __future__ import annotations

import re

_STEP = re.compile(r"""\[\s*'([^']*)'\s*\]|\[\s*"([^"]*)"\s*\]|\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(\d+)\s*\]""")


def parse_jsonpath(path: str) -> tuple[str | int, ...]:
    """The steps of a JSONPath: ``$['a'][0]`` -> ("a", 0). ValueError when Redshift's grammar (or a
    key that the embedded engine cannot quote: one holding a double quote) does not allow it."""
    if not path.startswith("$"):
        raise ValueError(f"JSONPath must start with $: {path!r}")
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _STEP.match(path, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath {path!r} at position {pos}")
        key = next((g for g in m.groups()[:3] if g is not None), None)
        if key is None:
            steps.append(int(m.group(4)))
        elif '"' in key:
            raise ValueError(f"unsupported JSONPath key with a double quote: {path!r}")
        else:
            steps.append(key)
        pos = m.end()
    if not steps:
        raise ValueError(f"JSONPath selects the whole record: {path!r}")
    return tuple(steps)
