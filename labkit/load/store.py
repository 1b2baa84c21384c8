"""The last results of each scenario (and the baseline), kept per lab for the phase-6 checks.

Checks must not run minutes of load themselves; they judge what the notebook or
``labkit bench --scenario`` last measured, saved here as JSON (redacted) under
the lab's state directory: ``<sandbox.state_dir>/load/`` or
``~/.local/state/labkit/<lab>/load/``. Each file records when it was saved and a
fingerprint of the settings that shape the numbers (versions, components,
targets); results older than a week, or measured under other settings, are set
aside as stale (named in ``_stale``) rather than judged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from labkit.params import Lab
from labkit.secrets import redact

__all__ = ["MAX_AGE", "fingerprint", "load_saved", "save", "store_dir"]

MAX_AGE = dt.timedelta(days=7)


def fingerprint(lab: Lab) -> str:
    """A short hash of the lab settings that shape load results."""
    shaping = lab.model_dump(
        mode="json", include={"versions", "postgres", "redis", "shlink", "istio", "targets"}
    )
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


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
    document = {
        "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "fingerprint": fingerprint(lab),
        "entries": redact(entries),
    }
    path.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    return path


def load_saved(lab: Lab) -> dict[str, list[dict[str, Any]]]:
    """Every saved name -> its entries (unreadable files are skipped and named in ``_errors``)."""
    folder = store_dir(lab)
    saved: dict[str, list[dict[str, Any]]] = {}
    now, wanted = dt.datetime.now(dt.UTC), fingerprint(lab)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            saved_at = dt.datetime.fromisoformat(document["saved_at"])
            entries = document["entries"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            saved.setdefault("_errors", []).append({"file": str(path), "error": str(exc)})
            continue
        if document.get("fingerprint") != wanted:
            reason = "measured under other settings (versions, components or targets changed)"
        elif now - saved_at > MAX_AGE:
            reason = f"measured {saved_at:%Y-%m-%d}, more than {MAX_AGE.days} days ago"
        else:
            saved[path.stem] = entries
            continue
        saved.setdefault("_stale", []).append({"file": str(path), "reason": reason})
    return saved
