"""What every asset of this project shows in the UI besides its table: owners and code references."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dagster as dg

OWNERS = ["team:data-engineering"]
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def code_references(*files: str | tuple[str, str]) -> dict[str, Any]:
    """dagster/code_references to files of this package (``"sql/users.sql"`` or ``(path, label)``).

    Merged with the reference to the asset's function that ``dg.with_source_code_references`` adds
    in the definitions; ``dg.link_code_references_to_git`` turns both into links to the repository.
    """
    refs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # code references are beta in Dagster 1.13
        for item in files:
            path, label = item if isinstance(item, tuple) else (item, None)
            full = PACKAGE_DIR / path
            if not full.is_file():
                raise FileNotFoundError(f"code reference to a file that does not exist: {full}")
            refs.append(dg.LocalFileCodeReference(file_path=str(full), label=label))
        return {"dagster/code_references": dg.CodeReferencesMetadataValue(code_references=refs)}
