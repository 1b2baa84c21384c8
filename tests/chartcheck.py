"""Test helper: log axes that plot values <= 0 (plotly drops them: bars vanish, ranges explode)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np


def _numbers(values: Any) -> list[float]:
    """The numbers of a trace's x or y as plotly JSON holds them (lists or typed arrays)."""
    if isinstance(values, dict) and "bdata" in values:  # plotly >= 6 typed array
        array = np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
        return [float(value) for value in array.ravel()]
    if isinstance(values, list):
        found: list[float] = []
        for value in values:
            if isinstance(value, list | dict):
                found += _numbers(value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                found.append(float(value))
        return found
    return []


def log_axis_problems(figure: dict[str, Any]) -> list[str]:
    """Each trace value <= 0 on an axis of type log, as "trace: axis has value"."""
    layout = figure.get("layout", {})
    problems = []
    for index, trace in enumerate(figure.get("data", [])):
        for letter in ("x", "y"):
            reference = str(trace.get(f"{letter}axis", letter))  # "x", "x2", ...
            axis = layout.get(f"{letter}axis{reference[1:]}", {})
            if axis.get("type") != "log":
                continue
            bad = [value for value in _numbers(trace.get(letter)) if value <= 0]
            if bad:
                name = trace.get("name") or f"trace {index}"
                problems.append(f"{name}: log {letter} axis has {bad[:3]}")
    return problems


def charts_with_log_problems(charts: Path) -> dict[str, list[str]]:
    """Every chart JSON in a run's charts/ folder with its log-axis problems."""
    found = {}
    for path in sorted(charts.glob("*.json")):
        problems = log_axis_problems(json.loads(path.read_text(encoding="utf-8")))
        if problems:
            found[path.name] = problems
    return found
