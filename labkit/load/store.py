"""The last results of each scenario (and the baseline), kept per lab for the phase-6 checks.

Checks must not run minutes of load themselves; they judge what the notebook or
``labkit bench --scenario`` last measured, saved here as JSON (redacted) under
the lab's state directory: ``<sandbox.state_dir>/load/`` or
``~/.local/state/labkit/<lab>/load/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labkit.params import Lab
from labkit.secrets import redact

__all__ = ["load_saved", "save", "store_dir"]


def store_dir(lab: Lab) -> Path:
    """Where this lab's load results are kept."""
    base = (
        lab.sandbox.state_dir
        if lab.sandbox is not None
        else Path(f"~/.local/state/labkit/{lab.name}")
    )
    return lab.path(base) / "load"


def save(lab: Lab, name: str, entries: list[dict[str, Any]]) -> Path:
    """Replace the saved entries of ``name`` (a scenario, or ``baseline``); returns the file."""
    folder = store_dir(lab)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(redact(entries), indent=1, default=str) + "\n", encoding="utf-8")
    return path


def load_saved(lab: Lab) -> dict[str, list[dict[str, Any]]]:
    """Every saved name -> its entries (unreadable files are skipped and named in ``_errors``)."""
    folder = store_dir(lab)
    saved: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            saved[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            saved.setdefault("_errors", []).append({"file": str(path), "error": str(exc)})
    return saved
